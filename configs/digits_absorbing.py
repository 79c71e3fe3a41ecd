"""Masked diffusion on 8x8 digit images (sequence of 64 pixel tokens)."""

from configs import base


def get_config():
    config = base.get_config()
    config.data.name = "digits"
    config.process.name = "masked"
    config.process.schedule = "linear"
    config.model.size = "tiny"
    config.model.time_conditioning = False
    config.model.dropout = 0.0
    config.training.batch_size = 64
    config.training.num_steps = 2000
    config.training.learning_rate = 1e-3
    config.training.warmup_steps = 100
    config.training.ema_decay = 0.999
    config.training.log_every = 100
    config.training.eval_every = 500
    config.training.eval_batches = 4
    config.sampler.num_steps = 64
    return config
