"""Learned decoding order (methods/learned_order.py) on character-level Shakespeare.

One power per position (alpha_{t,l} = 1 - t^{w_l}, w learned with its own Adam), otherwise the
model and budget of `shakespeare_absorbing` (8 minutes on a 2-core CPU). Sampling: the ordered
first-hitting sampler (`config.sampler.name = 'ordered_first_hitting'`: one network call per
character, positions by decreasing T_l = u_l^(1/w_l)) with nucleus 0.9; 'ancestral' and 'psi'
also take the learned per-position schedule.

    python -m discrete_diffusion.main --config=configs/shakespeare_learned_order.py --workdir=/tmp/slo
    # GenMD4 (one power per character): --config.method.schedule=value \
    #     --config.sampler.name=ancestral
"""

from configs import shakespeare_absorbing


def get_config():
    config = shakespeare_absorbing.character_baseline()
    config.method.name = "learned_order"
    config.method.schedule = "position"  # 'position' | 'value' (GenMD4)
    config.method.num_masks = 2
    config.method.power_init = 1.0
    config.method.schedule_learning_rate = 1e-2
    config.sampler.name = "ordered_first_hitting"  # the learned order; 'value' needs 'ancestral'
    # the method's time proposal covers t in (0, 1]: config.training.t_min is not used
    return config
