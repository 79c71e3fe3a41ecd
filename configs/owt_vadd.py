"""VADD on OpenWebText: the MDLM of owt_absorbing.py (small DiT, L=1024, batch 512, lr 3e-4) with a
latent z through adaLN and a recognition transformer of the same size (the paper's GenDIT /
InferDIT pair, ~1.5x the training cost of MDLM).

Choices (the paper's values could not be read): latent_dim 32, KL warm-up over the first 10k
steps; the held-out bounds during training use 16 latents per time (eval_nelbo = the per_step
sampler's marginal NELBO; for the paper's IW-DELBO use --config.eval.iwae_samples=1000).
Samples: ancestral, a fresh z per step.
"""

from configs import owt_absorbing


def get_config():
    config = owt_absorbing.get_config()
    config.method.name = "vadd"
    config.method.encoder_layers = 12
    config.model.latent_dim = 32
    config.training.kl_warmup_steps = 10_000
    config.eval.iwae_samples = 16
    config.sampler.latent = "per_step"
    return config
