"""Peak memory and time of the Duo curriculum's network input: dense against Duo II's top-k.

    JAX_PLATFORMS=cpu python benchmarks/duo_curriculum.py [--batch 2] [--seq_len 1024] \
        [--num_classes 32768] [--d_model 768] [--top_k 2 8 32] [--tau 1e-3] [--reps 3]

Dense (Duo): w = a e_x0 + s eps, the [B, L, K] tempered softmax softmax(w / tau), then its matmul
with the [K, D] embedding matrix. Top-k (Duo II): `dd.duality.relaxed_sample(..., top_k=k)`, the
k + 1 bag entries per token, then the embedding bag (gather k + 1 rows, weighted sum); no K-wide
array. Both jitted; each is measured forward only (the input of the forward pass) and forward +
backward (the gradient with respect to the embedding matrix, as in a training step), in one
process. Peak memory is XLA's buffer assignment of the compiled program (temporaries + arguments +
outputs, `compiled.memory_analysis()`); time is the median of --reps runs after a warm-up. Prints
each figure and the top-k / dense ratios. The paper's 0.67x memory / 0.75x time are for a whole
training step of a 170M-parameter model on GPU, where the network dominates; this isolates the
input. The whole training step, dense against top-k (XLA memory analysis, peak RSS, step time):

    JAX_PLATFORMS=cpu python benchmarks/train_memory.py --config=configs/owt_duo.py \
        --random_tokens=50257 --dtype=float32 --batch_sizes=2 --run --steps=2 [--config.method.top_k=8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import discrete_diffusion as dd


def input_fn(num_classes: int, tau: float, top_k: int | None):
    """(key, x0 [B, L], a [B], E [K, D]) -> network input [B, L, D]."""

    def f(key, x0, a, E):
        _, ids, weights = dd.duality.relaxed_sample(key, x0, a, num_classes, tau=tau, top_k=top_k)
        if top_k is None:
            return weights @ E  # [B, L, K] @ [K, D]
        return dd.duality.embedding_bag(E, ids, weights)  # [B, L, k + 1] rows of E

    return f


def grad_fn(f):
    """d/dE of <f(key, x0, a, E), cotangent>: the backward pass into the embedding matrix."""

    def g(key, x0, a, E, cot):
        return jax.grad(lambda E_: jnp.vdot(f(key, x0, a, E_), cot))(E)

    return g


def measure(fn, args, reps: int) -> dict[str, float]:
    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    peak = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"peak_mib": peak / 2**20, "temp_mib": mem.temp_size_in_bytes / 2**20,
            "time_s": statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--num_classes", type=int, default=32768)
    parser.add_argument("--d_model", type=int, default=768)
    parser.add_argument("--top_k", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--tau", type=float, default=1e-3)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    B, L, K, D = args.batch, args.seq_len, args.num_classes, args.d_model
    key = jax.random.key(0)
    x0 = jax.random.randint(jax.random.key(1), (B, L), 0, K)
    a = jnp.linspace(0.93, 0.986, B)  # Duo's OWT curriculum window of Gaussian levels
    E = jax.random.normal(jax.random.key(2), (K, D)) * 0.02
    cot = jax.random.normal(jax.random.key(3), (B, L, D))
    print(f"B={B} L={L} K={K} D={D} tau={args.tau} backend={jax.default_backend()} "
          f"devices={jax.device_count()}")

    rows = {}
    for top_k in [None, *args.top_k]:
        name = "dense" if top_k is None else f"top-{top_k}"
        f = input_fn(K, args.tau, top_k)
        rows[name] = {"fwd": measure(f, (key, x0, a, E), args.reps),
                      "fwd+bwd": measure(grad_fn(f), (key, x0, a, E, cot), args.reps)}

    print(f"{'input':>8} {'pass':>8} {'peak MiB':>10} {'temp MiB':>10} {'time s':>9} "
          f"{'mem ratio':>10} {'time ratio':>10}")
    for name, by_pass in rows.items():
        for pass_name, m in by_pass.items():
            ref = rows["dense"][pass_name]
            print(f"{name:>8} {pass_name:>8} {m['peak_mib']:10.1f} {m['temp_mib']:10.1f} {m['time_s']:9.4f} "
                  f"{m['peak_mib'] / ref['peak_mib']:10.4f} {m['time_s'] / ref['time_s']:10.4f}")


if __name__ == "__main__":
    main()
