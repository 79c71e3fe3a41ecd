"""Uniform diffusion on OpenWebText with a leave-one-out parameterized network and the ELBO loss."""

from configs import owt_uniform


def get_config():
    config = owt_uniform.get_config()
    config.model.parameterization = "loo"
    config.training.loss = "elbo"
    return config
