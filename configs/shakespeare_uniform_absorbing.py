"""Tiny character-level absorbing-state uniform diffusion (AUDM) on Shakespeare, sampled with ReAUDM."""

from configs import shakespeare_uniform


def get_config():
    config = shakespeare_uniform.get_config()
    config.process.name = "uniform_absorbing"
    config.model.parameterization = "denoiser"
    config.model.noise_input = True
    config.sampler.name = "reaudm"
    return config
