"""Uniform diffusion on the synthetic Markov chain."""

from configs import synthetic_absorbing


def get_config():
    config = synthetic_absorbing.get_config()
    config.process.name = "uniform"
    config.model.time_conditioning = True
    return config
