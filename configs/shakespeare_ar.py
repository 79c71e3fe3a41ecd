"""The autoregressive baseline on Shakespeare: the same network as shakespeare_absorbing with causal
attention, trained by the exact negative log-likelihood. Its held-out bits per character are the
reference the diffusion NELBOs are compared with, and a trained checkpoint can serve as an
in-project generative-perplexity judge (`evaluation.judge.ARJudge`)."""

from configs import shakespeare_absorbing


def get_config():
    config = shakespeare_absorbing.get_config()
    config.model.name = "ar"
    config.model.time_conditioning = False
    config.sampler.name = "ancestral"  # only temperature / top_k / top_p are read for 'ar'
    config.sampler.top_p = 1.0
    return config
