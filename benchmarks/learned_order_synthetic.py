"""Learned decoding order on the `pair_hash` corpus: is the known order recovered, and does the
learned schedule beat the fixed one at equal steps?

    JAX_PLATFORMS=cpu python benchmarks/learned_order_synthetic.py --workdir=/tmp/lo_bench \
        [--steps 2500] [--seeds 0] [--direction forward|reversed] [--eval_num_t 8]

Trains (in-process, `training.train_and_evaluate`) configs/synthetic_learned_order.py twice per
seed for --steps steps: with the schedule learned, and with `schedule_learning_rate = 0` (w = 1
at every position: the fixed linear schedule, same network, estimator and two masks). The corpus
(data/pair_hash.py): L = 16, K = 16, x half uniform, y_i = f(x_i, x_{i+1}); decoding the x half
first makes every conditional easy. Prints per seed:

  * w per position of the learned schedule (EMA parameters, the evaluated ones), its mean on the
    x half and on the y half, and, under Plackett-Luce(w) (Monte Carlo over T_l = u_l^(1/w_l),
    200k draws), P(x half before y half) and P(every y_i after both parents x_i, x_{i+1}) next to
    their values at w = 1;
  * held-out NELBO (nats/token) of both models on the same held-out sequences with the same
    randomness (`method.nelbo_samples` with one key per batch: the same v and mask uniforms u;
    t = v^(1/c) and the masks u < t^w then differ only through w), with standard errors over
    sequences, and the PAIRED difference learned - fixed with its standard error (the SE of the
    per-sequence differences), beside the exact floor H(X_1:L) / L = log(K) / 2; and the same
    by decoding orders (`learned_order.order_nll`, --eval_num_orders orders pi ~ PL(w) per
    sequence with the same uniforms for both models: the NELBO of a time-independent network
    without the estimator's importance weight in t, so a smaller standard error).

Run again with the same --workdir and --steps, the finished runs are restored from their
checkpoints and only evaluated. Writes <workdir>/learned_order_synthetic.json and
<workdir>/learned_order_w.png (w per position, x half shaded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/ (and the package, when it is not installed)


def _config(steps: int, seed: int, direction: str, **method):
    from configs import synthetic_learned_order

    config = synthetic_learned_order.get_config()
    config.data.pair_hash_direction = direction
    config.training.num_steps = steps
    config.training.seed = seed
    config.training.log_every = max(1, steps // 10)
    config.training.eval_every = steps
    config.training.eval_batches = 4
    config.training.sample_every = 0
    config.training.checkpoint_every = steps
    config.eval.frontier = False
    for k, v in method.items():
        config.method[k] = v
    return config


def train(workdir: str, steps: int, seed: int, direction: str, **method):
    """(config, EMA params, seconds) of one training run."""
    from discrete_diffusion import training

    config = _config(steps, seed, direction, **method)
    t0 = time.time()
    state = training.train_and_evaluate(config, workdir)
    return config, state.ema_params, time.time() - t0


def held_out_nelbo(config, params_by_model: dict, num_t: int, num_orders: int,
                   seed: int) -> dict[str, np.ndarray]:
    """Per-sequence NELBO estimates (nats) `[N]` of each model on the whole held-out split, with
    the same randomness for every model:

      '<model>'        `method.nelbo_samples` (the trainer's estimator: t = v^(1/c), masks
                       u < t^w), mean over num_t draws, same key (v and u) for every model;
      '<model>_order'  `learned_order.order_nll`: -log mu along num_orders decoding orders
                       pi ~ PL(w) per sequence (T = u^(1/w), same u for every model), which for
                       a time-independent network has the NELBO as its mean and no weight in t.
    """
    from discrete_diffusion import data as data_lib
    from discrete_diffusion import methods
    from discrete_diffusion.methods import learned_order as lo

    if config.model.time_conditioning:
        raise ValueError("the order estimator is the NELBO only for config.model.time_conditioning"
                         "=False")
    data = data_lib.get_data(config)
    method = methods.get(config, data.num_classes)
    fn = jax.jit(method.nelbo_samples, static_argnums=3)

    @jax.jit
    def by_order(params, x0, key):
        u = jax.random.uniform(key, (num_orders,) + x0.shape, minval=1e-12)
        nll = jax.lax.map(lambda u_j: lo.order_nll(method.denoise_fn(params), method.powers(params),
                                                   x0, u_j, method.mask_id), u)
        return nll.mean(0)

    out: dict[str, list] = {}
    for b, batch in enumerate(data.eval_batches(max_batches=10**9)):
        valid = np.asarray(batch.get("valid", np.ones(len(batch["tokens"]), bool)))
        tokens = jnp.asarray(batch["tokens"])
        key = jax.random.fold_in(jax.random.key(1000 + seed), b)
        for name, params in params_by_model.items():
            est = np.asarray(fn(params, {"tokens": tokens}, key, num_t))  # [B, num_t]
            out.setdefault(name, []).append(est.mean(-1)[valid])
            order = np.asarray(by_order(params, tokens, jax.random.fold_in(key, 1)))
            out.setdefault(f"{name}_order", []).append(order[valid])
    return {k: np.concatenate(v) for k, v in out.items()}


def order_stats(w: np.ndarray, corpus, n_draws: int = 200_000, seed: int = 0) -> dict:
    """Under Plackett-Luce(w) (decoding in decreasing T_l = u_l^(1/w_l), Monte Carlo): P(every x
    position is decoded before every y position) and P(every y_i after both of its parents)."""
    L = len(w)
    rng = np.random.default_rng(seed)
    log_T = np.log(rng.random((n_draws, L))) / w  # larger = decoded earlier
    x_pos = corpus.x_positions(L)
    y_pos = np.setdiff1d(np.arange(L), x_pos)
    x_before_y = log_T[:, x_pos].min(1) > log_T[:, y_pos].max(1)
    ok = np.ones(n_draws, bool)
    for y, pa, pb in corpus.parents(L):
        ok &= (log_T[:, y] < log_T[:, pa]) & (log_T[:, y] < log_T[:, pb])
    return {"p_x_half_first": float(x_before_y.mean()), "p_every_y_after_parents": float(ok.mean())}


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--direction", default="forward", choices=["forward", "reversed"])
    ap.add_argument("--eval_num_t", type=int, default=8)
    ap.add_argument("--eval_num_orders", type=int, default=4)
    args = ap.parse_args()
    from discrete_diffusion.data import pair_hash

    results = []
    for seed in args.seeds:
        tag = f"{args.direction}_s{seed}"
        cfg, p_learned, sec_l = train(os.path.join(args.workdir, f"learned_{tag}"), args.steps,
                                      seed, args.direction)
        _, p_fixed, sec_f = train(os.path.join(args.workdir, f"fixed_{tag}"), args.steps, seed,
                                  args.direction, schedule_learning_rate=0.0)
        L = int(cfg.data.seq_len)
        K = int(cfg.data.pair_hash_vocab_size)
        corpus = pair_hash.PairHash.random(K, seed=int(cfg.data.seed), direction=args.direction)
        floor = corpus.sequence_entropy(L) / L
        per_seq = {k: v / L for k, v in held_out_nelbo(
            cfg, {"learned": p_learned, "fixed": p_fixed}, args.eval_num_t, args.eval_num_orders,
            seed).items()}
        learned, fixed = per_seq["learned"], per_seq["fixed"]
        learned_o, fixed_o = per_seq["learned_order"], per_seq["fixed_order"]
        w = np.asarray(jax.nn.softplus(p_learned["schedule"]["theta"]), np.float64)
        x_pos = corpus.x_positions(L)
        y_pos = np.setdiff1d(np.arange(L), x_pos)
        r = {
            "seed": seed, "direction": args.direction, "steps": args.steps,
            "train_seconds": {"learned": sec_l, "fixed": sec_f},
            "w": w.tolist(), "w_x_half": float(w[x_pos].mean()), "w_y_half": float(w[y_pos].mean()),
            "order": order_stats(w, corpus), "order_w1": order_stats(np.ones(L), corpus),
            "nelbo_learned": _mean_se(learned), "nelbo_fixed": _mean_se(fixed),
            "paired_diff": _mean_se(learned - fixed), "floor": floor,
            "order_nelbo_learned": _mean_se(learned_o), "order_nelbo_fixed": _mean_se(fixed_o),
            "order_paired_diff": _mean_se(learned_o - fixed_o),
            "num_sequences": int(len(learned)), "eval_num_t": args.eval_num_t,
            "eval_num_orders": args.eval_num_orders,
        }
        results.append(r)
        print(f"[{tag}] w per position: {np.round(w, 2).tolist()}")
        print(f"[{tag}] mean w: x half {r['w_x_half']:.3f}, y half {r['w_y_half']:.3f}; "
              f"P(x half first) {r['order']['p_x_half_first']:.4f} (w=1: "
              f"{r['order_w1']['p_x_half_first']:.5f}); P(every y after its parents) "
              f"{r['order']['p_every_y_after_parents']:.4f} (w=1: "
              f"{r['order_w1']['p_every_y_after_parents']:.5f})")
        print(f"[{tag}] held-out NELBO (nats/token, {r['num_sequences']} sequences x "
              f"{args.eval_num_t} t): learned {r['nelbo_learned'][0]:.4f} +- "
              f"{r['nelbo_learned'][1]:.4f}, fixed {r['nelbo_fixed'][0]:.4f} +- "
              f"{r['nelbo_fixed'][1]:.4f}, paired learned - fixed {r['paired_diff'][0]:+.4f} +- "
              f"{r['paired_diff'][1]:.4f}; floor {floor:.4f}; train s: {sec_l:.0f} / {sec_f:.0f}",
              flush=True)
        print(f"[{tag}] held-out NELBO by orders (order_nll, {args.eval_num_orders} orders per "
              f"sequence): learned {r['order_nelbo_learned'][0]:.4f} +- "
              f"{r['order_nelbo_learned'][1]:.4f}, fixed {r['order_nelbo_fixed'][0]:.4f} +- "
              f"{r['order_nelbo_fixed'][1]:.4f}, paired learned - fixed "
              f"{r['order_paired_diff'][0]:+.4f} +- {r['order_paired_diff'][1]:.4f}; floor "
              f"{floor:.4f}", flush=True)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "learned_order_synthetic.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    L = len(results[0]["w"])
    x_pos = pair_hash.PairHash(np.zeros((2, 2), int), args.direction).x_positions(L)
    ax.axvspan(x_pos.min() - 0.5, x_pos.max() + 0.5, color="tab:green", alpha=0.1,
               label="x half (decode first)")
    for r in results:
        ax.plot(r["w"], marker="o", label=f"seed {r['seed']}")
    ax.axhline(1.0, color="gray", lw=0.5)
    ax.set_xlabel("position l")
    ax.set_ylabel("learned w_l (larger: decoded earlier)")
    ax.set_title(f"pair_hash ({args.direction}), {args.steps} steps", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(args.workdir, "learned_order_w.png")
    fig.savefig(path, dpi=120)
    print("wrote", path)


if __name__ == "__main__":
    main()
