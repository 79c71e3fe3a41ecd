"""VADD on the discretised 2-D checkerboard (L = 2 tokens, K = 32 bins; data/checkerboard.py).

The paper's few-step toy: one-step masked diffusion samples the two coordinates independently
(the uniform law over the grid, JS = 0.216 nats from the checkerboard), while the latent couples
them. configs/checkerboard_mdlm.py's tiny time-conditioned DiT (same data, schedule, optimiser
and budget) with a 4-dim z and a one-layer recognition model (benchmarks/vadd_checkerboard.py
trains both for the same wall-clock time and measures JS at 1 and 5 steps). Free bits (0.1 nats
per latent dimension) keep the latent from collapsing early (README, VADD).
"""

from configs import checkerboard_mdlm


def get_config():
    config = checkerboard_mdlm.get_config()
    config.method.name = "vadd"
    config.method.encoder_layers = 1
    config.model.latent_dim = 4
    config.training.kl_warmup_steps = 1000
    # free bits (nats per latent dim and sequence): without them the latent stayed collapsed
    # (KL ~1e-5) for thousands of steps at seed 0; with 0.1 it is used from the first 200 steps
    config.training.kl_free_bits = 0.1
    config.eval.iwae_samples = 16
    config.sampler.latent = "per_step"
    return config
