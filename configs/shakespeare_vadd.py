"""VADD on character-level Shakespeare: the MDLM of shakespeare_absorbing.py with a 16-dim latent z
(through adaLN) and a recognition model of the same size, trained with the double ELBO.

The KL weight rises linearly from 0 to 1 over the first 1000 steps (posterior collapse otherwise);
held-out: every bound of methods/vadd.py with 8 latents per (t, x_t) (eval_nelbo = the per_step
sampler's marginal NELBO; eval_iw_delbo the paper's importance-weighted DELBO); the training
log carries the DELBO and its two terms (delbo_ce, delbo_kl). Samples: 16 ancestral steps with a
fresh z per step (VADD's few-step regime; config.sampler.latent='per_trajectory' for one z per
sample). Training stops after 4000 steps or 8 minutes, then evaluates and samples.
"""

from configs import shakespeare_absorbing


def get_config():
    config = shakespeare_absorbing.character_baseline()
    config.method.name = "vadd"
    config.method.encoder_layers = 2  # the recognition transformer (width and heads: the model's)
    config.model.latent_dim = 16
    config.training.kl_warmup_steps = 1000
    config.eval.iwae_samples = 8
    config.sampler.name = "ancestral"
    config.sampler.num_steps = 16
    config.sampler.top_p = 1.0
    config.sampler.latent = "per_step"
    return config
