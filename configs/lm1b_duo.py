"""Duo on LM1B (Sahoo et al. 2025, section 5.1; reference scripts of s-sahoo/duo): the small DiT of
lm1b_uniform.py (L = 128, batch 512, lr 3e-4, warmup 2500, EMA 0.9999, 1M steps), the first 500k
steps through the Gaussian-relaxed curriculum (tau = 1e-3, gamma in [-3.5, -1.75], i.e.
alpha = T(a) in [0.049, 0.942] at K = 30522, bert-base-uncased), then plain uniform diffusion.
"""

from configs import base, lm1b_uniform


def get_config():
    config = lm1b_uniform.get_config()
    config.method.name = "duo"
    config.method.curriculum_steps = 500_000
    config.method.tau = 1e-3
    config.method.tau_end = base.ph(float)
    config.method.top_k = base.ph(int)
    config.method.gamma_min = -3.5
    config.method.gamma_max = -1.75
    config.model.parameterization = "loo"
    return config
