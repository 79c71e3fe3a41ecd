"""Learned decoding order (methods/learned_order.py) on the synthetic Markov chain; CPU minutes.

The corpus is the left-to-right first-order Markov chain of `synthetic_absorbing` (known entropy
rate; block-entropy floor H(pi) + (L - 1) H). A network that is exact makes every order equally
good, so the learned powers w (alpha_{t,l} = 1 - t^{w_l}) move only where the network's
conditionals for some orders are better than for others: contiguous orders (left-to-right or
right-to-left) use one-step transitions, random orders multi-step ones.

    python -m discrete_diffusion.main --config=configs/synthetic_learned_order.py --workdir=/tmp/lo
    # compare: configs/synthetic_absorbing.py (one linear schedule for every position)

Measured (benchmarks/learned_order_synthetic.py, 1000 steps, 2 seeds): the learned w stays in
[0.54, 1.42] with no monotone order (lowest at both ends), and the held-out NELBO is within one SE
of w frozen at 1 and of MDLM (README, "Learned decoding order").

Logged beside the loss: w_first, w_last and w_order_corr (correlation of log w with the position;
< 0 means w falls along the sequence: left-to-right decoding). Samples use the ordered
first-hitting sampler of the method (config.sampler.name is not read; temperature/top_p are).
"""

from configs import synthetic_absorbing


def get_config():
    config = synthetic_absorbing.get_config()
    config.method.name = "learned_order"
    config.method.schedule = "position"  # 'position' (w [L]) | 'value' (w [K], GenMD4)
    config.method.num_masks = 2  # masks per sequence at a shared t (REINFORCE-LOO)
    config.method.power_init = 1.0  # w = 1: the linear schedule at every position
    config.method.schedule_learning_rate = 1e-2
    config.data.seq_len = 16
    config.process.schedule = "linear"  # unused by the method (its schedule is learned)
    config.sampler.name = "first_hitting"  # not read by learned_order (ordered first hitting)
    return config
