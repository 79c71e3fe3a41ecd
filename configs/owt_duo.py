"""Duo on OpenWebText (Sahoo et al. 2025, section 5.1; reference scripts of s-sahoo/duo): the small
DiT of owt_uniform.py (L = 1024, batch 512, lr 3e-4, warmup 2500, EMA 0.9999, 1M steps), trained
for the first 500k steps through the Gaussian-relaxed curriculum (tau = 1e-3, Gaussian window
gamma in [-3.55, -1.85], i.e. alpha = T(a) in [0.049, 0.945] at K = 50257) and then as plain
uniform diffusion with the log-linear schedule. top_k = None is Duo's dense input; Duo II's
efficient curriculum sets top_k (e.g. 8; the paper reports 2 works) for the embedding-bag input.
"""

from configs import base, owt_uniform


def get_config():
    config = owt_uniform.get_config()
    config.method.name = "duo"
    config.method.curriculum_steps = 500_000
    config.method.tau = 1e-3
    config.method.tau_end = base.ph(float)
    config.method.top_k = base.ph(int)
    config.method.gamma_min = -3.55
    config.method.gamma_max = -1.85
    config.model.parameterization = "loo"
    return config
