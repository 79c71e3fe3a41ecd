"""VADD on character-level Shakespeare: the MDLM of shakespeare_absorbing.py with a 16-dim latent z
(through adaLN) and a recognition model of the same size, trained with the double ELBO.

The KL weight rises linearly from 0 to 1 over the first 1000 steps (posterior collapse otherwise);
held-out likelihood is the importance-weighted bound with 8 latents per (t, x_t); the training
log carries the DELBO and its two terms (delbo_ce, delbo_kl). Samples: 16 ancestral steps with a
fresh z per step (VADD's few-step regime; config.sampler.latent='per_trajectory' for one z per
sample). Training stops after 4000 steps or 8 minutes, then evaluates and samples.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.method.name = "vadd"
    config.method.encoder_layers = 2  # the recognition transformer (width and heads: the model's)
    config.data.name = "shakespeare"
    config.data.seq_len = 128
    config.process.name = "masked"
    config.process.schedule = "loglinear"
    config.model.size = "custom"
    config.model.num_layers = 2
    config.model.d_model = 128
    config.model.num_heads = 4
    config.model.cond_dim = 64
    config.model.latent_dim = 16
    config.model.time_conditioning = False  # MDLM
    config.model.dropout = 0.0
    config.training.batch_size = 32
    config.training.num_steps = 4000
    config.training.max_train_minutes = 8.0
    config.training.learning_rate = 3e-3
    config.training.warmup_steps = 200
    config.training.kl_warmup_steps = 1000
    config.training.ema_decay = 0.99
    config.training.log_every = 100
    config.training.eval_every = 1000
    config.training.eval_batches = 4
    config.training.sample_every = 4000
    config.training.checkpoint_every = 500
    config.eval.iwae_samples = 8
    config.sampler.name = "ancestral"
    config.sampler.num_steps = 16
    config.sampler.latent = "per_step"
    return config
