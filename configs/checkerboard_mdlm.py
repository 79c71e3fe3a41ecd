"""MDLM baseline on the discretised 2-D checkerboard: configs/checkerboard_vadd.py's denoiser
without the latent and the recognition model (the same data, schedule, optimiser and budget)."""

from configs import base


def get_config():
    config = base.get_config()
    config.data.name = "checkerboard"
    config.data.seq_len = 2
    config.data.num_train_sequences = 200_000
    config.data.num_eval_sequences = 4096
    config.process.name = "masked"
    config.process.schedule = "linear"
    config.model.size = "custom"
    config.model.num_layers = 2
    config.model.d_model = 64
    config.model.num_heads = 4
    config.model.cond_dim = 64
    config.model.time_conditioning = True
    config.model.dropout = 0.0
    config.training.batch_size = 256
    config.training.num_steps = 20_000
    config.training.max_train_minutes = 3.0
    config.training.learning_rate = 1e-3
    config.training.warmup_steps = 100
    config.training.ema_decay = 0.99
    config.training.log_every = 200
    config.training.eval_every = 2000
    config.training.eval_batches = 4
    config.training.sample_every = 20_000
    config.training.num_samples = 16
    config.training.checkpoint_every = 2000
    config.eval.judge = "none"
    config.eval.frontier = False
    config.sampler.name = "ancestral"
    config.sampler.num_steps = 1
    return config
