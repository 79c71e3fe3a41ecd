"""VADD on OpenWebText: the MDLM of owt_absorbing.py (small DiT, L=1024, batch 512, lr 3e-4) with a
latent z through adaLN and a recognition transformer of the same size (the paper's GenDIT /
InferDIT pair, ~1.5x the training cost of MDLM).

Choices (the paper's values could not be read): latent_dim 32, KL warm-up over the first 10k
steps; the held-out bound during training uses 16 importance samples (report the final one with
--config.eval.iwae_samples=1000, the paper's setting). Samples: ancestral, a fresh z per step.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.method.name = "vadd"
    config.method.encoder_layers = 12
    config.data.name = "openwebtext"
    config.data.seq_len = 1024
    config.process.name = "masked"
    config.process.schedule = "loglinear"
    config.model.size = "small"
    config.model.latent_dim = 32
    config.model.time_conditioning = False  # MDLM
    config.model.dropout = 0.1
    config.model.dtype = "bfloat16"
    config.training.batch_size = 512
    config.training.num_steps = 1_000_000
    config.training.learning_rate = 3e-4
    config.training.warmup_steps = 2500
    config.training.kl_warmup_steps = 10_000
    config.training.weight_decay = 0.0
    config.training.ema_decay = 0.9999
    config.training.log_every = 100
    config.training.eval_every = 10_000
    config.training.eval_batches = 64
    config.training.sample_every = 10_000
    config.training.checkpoint_every = 5_000
    config.training.max_checkpoints = 3
    config.eval.iwae_samples = 16
    config.sampler.name = "ancestral"
    config.sampler.num_steps = 1000
    config.sampler.latent = "per_step"
    return config
