"""MDLM on OpenWebText: small DiT, L=1024, batch 512, lr 3e-4, warmup 2500, EMA 0.9999."""

from configs import base


def get_config():
    config = base.get_config()
    config.data.name = "openwebtext"
    config.data.seq_len = 1024
    config.process.name = "masked"
    config.process.schedule = "loglinear"
    config.model.size = "small"
    config.model.time_conditioning = False  # MDLM
    config.model.dropout = 0.1
    config.model.dtype = "bfloat16"
    config.training.batch_size = 512
    config.training.num_steps = 1_000_000
    config.training.learning_rate = 3e-4
    config.training.warmup_steps = 2500
    config.training.weight_decay = 0.0
    config.training.ema_decay = 0.9999
    config.training.log_every = 100
    config.training.eval_every = 10_000
    config.training.eval_batches = 64
    config.training.sample_every = 10_000
    config.training.checkpoint_every = 5_000
    config.training.max_checkpoints = 3
    config.sampler.num_steps = 1000
    return config
