"""Tiny character-level Duo on Shakespeare (uniform diffusion trained through its Gaussian dual);
CPU minutes. The model, data and budget of shakespeare_uniform.py, with config.method.name='duo'
(discrete_diffusion/methods/duo.py): Duo's curriculum (the network reads softmax(w / tau) @ E of
the Gaussian latent w, tau = 1e-3, in the Gaussian window where alpha = T(a) spans [0.05, 0.95])
for the first `curriculum_steps` steps, then plain uniform-diffusion training. As in the paper the
curriculum takes half of the run: the run stops after 8 minutes (max_train_minutes), about 1000
steps on a 2-core CPU, so curriculum_steps = 500. Compare against shakespeare_uniform.py at equal
wall-clock (held-out NELBO in metrics.jsonl).
"""

from configs import base, shakespeare_uniform


def get_config():
    config = shakespeare_uniform.get_config()
    config.method.name = "duo"
    config.method.curriculum_steps = 500
    config.method.tau = 1e-3
    config.method.tau_end = base.ph(float)  # constant tau (Duo's scripts: log10 tau = -3 throughout)
    config.method.top_k = base.ph(int)  # dense input; an int k uses Duo II's top-k embedding bag
    config.method.gamma_min = base.ph(float)  # None: the window where T(a) spans [0.05, 0.95] for this K
    config.method.gamma_max = base.ph(float)
    config.model.parameterization = "loo"  # Duo's x_theta is read by the plug-in bridge (LOO)
    return config
