"""The jitted float32 matmul rate at the shapes a model's train step uses, against the square
n = 2048 rate that `train_throughput.py` divides by, in one process (so machine load hits all
rows alike).

    JAX_PLATFORMS=cpu python benchmarks/matmul_shapes.py --batch 32 --seq_len 256 --d_model 256 \
        --num_heads 8 [--reps 20]

Rows: the dense layers' matmuls over the B * L tokens (QKV/out projections [BL, d] x [d, d] and
[d, 3d]; MLP [BL, d] x [d, 4d] and back; their weight gradients [d, BL] x [BL, 4d]) and the
attention's per-head batched matmuls (Q K^T: [B * H, L, d / H] x [B * H, d / H, L]; P V). Each
prints GFLOP/s (median of --reps) and its ratio to the square rate. A model whose matmuls run
below the square rate cannot reach the square rate's fraction however little else it does: the
attention rows are what hold the small model (head dim 32) down on XLA:CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


def rate(fn, *shapes: tuple[int, ...], flops: float, reps: int) -> float:
    """GFLOP/s of jitted `fn` on float32 ones of `shapes` (median of `reps` timed calls)."""
    args = [jnp.ones(s, jnp.float32) for s in shapes]
    f = jax.jit(fn)
    f(*args).block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(*args).block_until_ready()
        times.append(time.perf_counter() - t0)
    return flops / float(np.median(times)) / 1e9


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--d_model", type=int, default=256)
    p.add_argument("--num_heads", type=int, default=8)
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args()
    T, d, H, L = a.batch * a.seq_len, a.d_model, a.num_heads, a.seq_len
    dh, BH = d // H, a.batch * H
    mm = lambda x, y: x @ y  # noqa: E731
    bmm = lambda x, y: jnp.einsum("bij,bjk->bik", x, y)  # noqa: E731
    square = rate(mm, (2048, 2048), (2048, 2048), flops=2 * 2048**3, reps=a.reps)
    cpu = platform.processor() or platform.machine()
    print(f"square n=2048: {square:.1f} GFLOP/s ({cpu}, {os.cpu_count()} cores; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    rows = [
        (f"projection [{T},{d}]x[{d},{d}]", mm, (T, d), (d, d), 2 * T * d * d),
        (f"qkv [{T},{d}]x[{d},{3 * d}]", mm, (T, d), (d, 3 * d), 2 * T * d * 3 * d),
        (f"mlp in [{T},{d}]x[{d},{4 * d}]", mm, (T, d), (d, 4 * d), 2 * T * d * 4 * d),
        (f"mlp out [{T},{4 * d}]x[{4 * d},{d}]", mm, (T, 4 * d), (4 * d, d), 2 * T * 4 * d * d),
        (f"weight grad [{d},{T}]x[{T},{4 * d}]", mm, (d, T), (T, 4 * d), 2 * d * T * 4 * d),
        (f"attention QK^T [{BH}x{L},{dh}]x[{dh},{L}]", bmm, (BH, L, dh), (BH, dh, L), 2 * BH * L * dh * L),
        (f"attention PV [{BH}x{L},{L}]x[{L},{dh}]", bmm, (BH, L, L), (BH, L, dh), 2 * BH * L * L * dh),
    ]
    for name, fn, s1, s2, flops in rows:
        r = rate(fn, s1, s2, flops=flops, reps=a.reps)
        print(f"{name:44s} {r:7.1f} GFLOP/s  {r / square:5.2f}x the square rate")


if __name__ == "__main__":
    main()
