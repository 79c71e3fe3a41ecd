"""UDLM/Duo-style uniform diffusion on OpenWebText (time-conditioned small DiT)."""

from configs import owt_absorbing


def get_config():
    config = owt_absorbing.get_config()
    config.process.name = "uniform"
    config.model.time_conditioning = True
    return config
