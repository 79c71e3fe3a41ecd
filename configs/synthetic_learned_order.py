"""Learned decoding order (methods/learned_order.py) on the `pair_hash` corpus; CPU minutes.

The corpus (discrete_diffusion/data/pair_hash.py): L = 16 tokens over K = 16, the first half x
i.i.d. uniform, the second half y_i = f(x_i, x_{i+1}) for a fixed random many-to-one table f.
Decoding all of x before y makes every conditional easy (uniform, then a two-token lookup);
orders that reveal a y before its parents need inversions of f through the chain. For an exact
network every order has the same NLL, so the order is learned only through what the network
finds easy: the learned powers w (alpha_{t,l} = 1 - t^{w_l}, larger w = decoded earlier) should
rise on positions 0..7 over 8..15. Floor: H(X_1:L) / L = log(16) / 2 = 1.3863 nats/token.

    python -m discrete_diffusion.main --config=configs/synthetic_learned_order.py --workdir=/tmp/lo
    # the fixed schedule (w = 1 at every position, same estimator):
    #   --config.method.schedule_learning_rate=0
    # the order reversed in the data (y half first; w should then rise on 8..15):
    #   --config.data.pair_hash_direction=reversed

benchmarks/learned_order_synthetic.py trains both and reports w per position (and a plot) and the
held-out NELBO of learned vs fixed with a paired standard error.

Logged beside the loss: w_first, w_last and w_order_corr (correlation of log w with the position;
< 0 means w falls along the sequence). Samples: the ordered first-hitting sampler
(`config.sampler.name = 'ordered_first_hitting'`: per-position unmasking times T_l = u_l^(1/w_l),
decoded in decreasing T_l, one network call per token); 'ancestral' and 'psi' also work with the
per-position schedule.
"""

from configs import synthetic_absorbing


def get_config():
    config = synthetic_absorbing.get_config()
    config.data.name = "pair_hash"
    config.data.seq_len = 16  # 8 x tokens, 8 hashed y tokens
    config.data.pair_hash_vocab_size = 16
    config.data.pair_hash_direction = "forward"  # 'reversed': y half first
    config.method.name = "learned_order"
    config.method.schedule = "position"  # 'position' (w [L]) | 'value' (w [K], GenMD4)
    config.method.num_masks = 2  # masks per sequence at a shared t (REINFORCE-LOO)
    config.method.power_init = 1.0  # w = 1: the linear schedule at every position
    config.method.schedule_learning_rate = 1e-2
    config.process.schedule = "linear"  # unused by the method (its schedule is learned)
    config.sampler.name = "ordered_first_hitting"  # or "ancestral" / "psi" (per-position alpha)
    config.eval.judge = "none"  # no exact judge for pair_hash (exact_log_likelihood is in the corpus)
    return config
