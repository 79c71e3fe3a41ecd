"""Tiny character-level uniform diffusion (UDLM/Duo-style) on Shakespeare; CPU in minutes."""

from configs import shakespeare_absorbing


def get_config():
    config = shakespeare_absorbing.character_baseline()
    config.process.name = "uniform"
    config.model.time_conditioning = True
    config.sampler.name = "ancestral"  # first-hitting is for masked diffusion only
    return config
