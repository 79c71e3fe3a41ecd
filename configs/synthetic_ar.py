"""The autoregressive baseline on the synthetic Markov chain: its exact held-out NLL approaches the
chain's entropy rate (printed beside it), the floor every diffusion NELBO is compared with."""

from configs import synthetic_absorbing


def get_config():
    config = synthetic_absorbing.get_config()
    config.model.name = "ar"
    config.model.time_conditioning = False
    return config
