"""Uniform diffusion on LM1B (time-conditioned small DiT)."""

from configs import lm1b_absorbing


def get_config():
    config = lm1b_absorbing.get_config()
    config.process.name = "uniform"
    config.model.time_conditioning = True
    return config
