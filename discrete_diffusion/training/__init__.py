"""Training: the trainer (jit, mesh, EMA, accumulation), optimizers, checkpoints and the loop.

It reads nothing about a method but the protocol of `discrete_diffusion.methods.base`.

    config, data, trainer = training.setup(config)          # data, num_classes, the method
    state = trainer.init_state(seed)
    state, metrics = trainer.train_step(state, next(data.train_iter))
    trainer.evaluate(state.ema_params, data.eval_batches())
    training.train_and_evaluate(config, workdir)            # the whole loop, resumable
"""

from discrete_diffusion.training.checkpoints import (
    checkpoint_manager,
    restore_checkpoint,
    restore_latest_readable,
    save_checkpoint,
)
from discrete_diffusion.training.faults import (
    NonFiniteTrainingError,
    TrainingStoppedError,
    UnreadableCheckpointError,
)
from discrete_diffusion.training.loop import (
    load_config,
    load_state,
    sample_and_write,
    sample_checkpoint,
    setup,
    train_and_evaluate,
    write_samples,
)
from discrete_diffusion.training.optimizer import (
    by_top_level_key,
    learning_rate_schedule,
    make_optimizer,
)
from discrete_diffusion.training.state import TrainState
from discrete_diffusion.training.trainer import Trainer, example_batch, get_trainer

__all__ = [
    "NonFiniteTrainingError", "TrainState", "Trainer", "TrainingStoppedError",
    "UnreadableCheckpointError", "by_top_level_key", "checkpoint_manager", "example_batch",
    "get_trainer", "learning_rate_schedule", "load_config", "load_state", "make_optimizer",
    "restore_checkpoint", "restore_latest_readable", "sample_and_write", "sample_checkpoint",
    "save_checkpoint", "setup", "train_and_evaluate", "write_samples",
]
