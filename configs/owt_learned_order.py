"""Learned decoding order on OpenWebText: the MDLM small DiT of `owt_absorbing` with GenMD4's
value-dependent schedule (one power per token id, alpha = 1 - t^{w[x_0]}; MD4 reports lower OWT
perplexity than MD4 but learned w that can overfit to the corpus statistics).

    python -m discrete_diffusion.main --config=configs/owt_learned_order.py --workdir=/tmp/owt_lo
    # one power per position instead: --config.method.schedule=position

Needs the prepared corpus (launch/prepare_*). Samples: GenMD4's ancestral sampler with
config.sampler.num_steps steps (the value schedule's order depends on the values).
"""

from configs import owt_absorbing


def get_config():
    config = owt_absorbing.get_config()
    config.method.name = "learned_order"
    config.method.schedule = "value"  # GenMD4
    config.method.num_masks = 2
    config.method.power_init = 1.0
    config.method.schedule_learning_rate = 1e-3
    config.model.time_conditioning = True  # the value schedule's denoiser depends on t
    return config
