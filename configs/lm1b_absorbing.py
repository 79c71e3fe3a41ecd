"""MDLM on LM1B: small DiT, L=128, batch 512, lr 3e-4, warmup 2500, EMA 0.9999."""

from configs import owt_absorbing


def get_config():
    config = owt_absorbing.get_config()
    config.data.name = "lm1b"
    config.data.seq_len = 128
    config.sampler.num_steps = 128
    return config
