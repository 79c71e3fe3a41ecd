"""The jitted float32 matmul rate at the shapes a model's train step uses, against the square
n = 2048 rate that `train_throughput.py` divides by, in one process (so machine load hits all
rows alike).

    JAX_PLATFORMS=cpu python benchmarks/matmul_shapes.py --batch 32 --seq_len 256 --d_model 256 \
        --num_heads 8 --vocab 256 [--attention_block 512] [--reps 20]
    # the 12-layer d = 768 model at L = 1024, batch 2, V = 50257:
    JAX_PLATFORMS=cpu python benchmarks/matmul_shapes.py --batch 2 --seq_len 1024 --d_model 768 \
        --num_heads 12 --vocab 50257

Rows: the dense layers' matmuls over the B * L tokens (QKV/out projections [BL, d] x [d, d] and
[d, 3d]; MLP [BL, d] x [d, 4d] and back; their weight gradients [d, BL] x [BL, 4d]) and the
attention's per-head batched matmuls (Q K^T: [B * H, L, d / H] x [B * H, d / H, L]; P V). Each
prints GFLOP/s (median of --reps) and its ratio to the square rate. A model whose matmuls run
below the square rate cannot reach the square rate's fraction however little else it does: the
attention rows are what hold the small model (head dim 32) down on XLA:CPU. The row '2D,
contraction dh' does Q K^T's FLOPs as one unbatched matmul [B H L, d / H] x [d / H, L]: where it is
as slow as the batched row, the short contraction (each output element is a d / H-term sum) is
the cause, not the per-head batching, and no regrouping of the heads would help.

With --vocab the output layer [BL, d] x [d, V] is a row too, and the last line is the ceiling these
rates put on the whole step: the model's matmul FLOPs (per layer 24 T d^2 dense and 4 T L d
attention, 2 T d V for the output layer; the backward pass twice each) over the time they take at
the measured rates, as a fraction of the square rate. A train step cannot reach a larger fraction
of the matmul rate by the model's FLOPs (`train_throughput.py`'s figure) however little else it
does. Attention at L > --attention_block is timed in the blocks the default (blockwise)
implementation uses (`models.attention.balanced_block`).
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
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--num_layers", type=int, default=6)
    p.add_argument("--attention_block", type=int, default=512)
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args()
    T, d, H, L, V = a.batch * a.seq_len, a.d_model, a.num_heads, a.seq_len, a.vocab
    dh = d // H
    blk = L if a.attention_block >= L else -(-L // -(-L // a.attention_block))  # balanced_block
    BH = a.batch * H * (-(-L // blk)) ** 2  # one matmul per (row, head, query block, key block)
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
        (f"attention QK^T [{BH}x{blk},{dh}]x[{dh},{blk}]", bmm, (BH, blk, dh), (BH, dh, blk),
         2 * BH * blk * dh * blk),
        (f"attention PV [{BH}x{blk},{blk}]x[{blk},{dh}]", bmm, (BH, blk, blk), (BH, blk, dh),
         2 * BH * blk * blk * dh),
        # the same FLOPs as Q K^T in one unbatched matmul with the same contraction (d / H): not
        # in the ceiling; it tells whether the batching or the short contraction is what is slow
        (f"2D, contraction dh [{BH * blk},{dh}]x[{dh},{blk}]", mm, (BH * blk, dh), (dh, blk),
         2 * BH * blk * dh * blk),
        (f"output layer [{T},{d}]x[{d},{V}]", mm, (T, d), (d, V), 2 * T * d * V),
        (f"output input grad [{T},{V}]x[{V},{d}]", mm, (T, V), (V, d), 2 * T * d * V),
        (f"output weight grad [{d},{T}]x[{T},{V}]", mm, (d, T), (T, V), 2 * T * d * V),
    ]
    rates = {}
    for name, fn, s1, s2, flops in rows:
        rates[name.split(" [")[0]] = r = rate(fn, s1, s2, flops=flops, reps=a.reps)
        print(f"{name:44s} {r:7.1f} GFLOP/s  {r / square:5.2f}x the square rate")
    frac = ceiling(rates, a.num_layers, T, d, L, V) / square
    print(f"ceiling at these rates ({a.num_layers} layers, no other work): {frac:.1%} of the square "
          "rate by the model's matmul FLOPs")


def ceiling(rates: dict[str, float], num_layers: int, T: int, d: int, L: int, V: int) -> float:
    """GFLOP/s of the step's matmuls alone at `rates` (GFLOP/s per row name): per layer dense
    24 T d^2 forward (qkv 6, projection 2, MLP 16) and attention 4 T L d (half at each attention
    row), the output layer 2 T d V once; the backward pass twice each (a dense layer's input
    gradient at its forward row's rate, its weight gradient at the 'weight grad' rate; attention's
    at its forward rates; the output layer's at its own two rows). An estimate: the backward
    shapes of the dense layers are not timed one by one."""
    fwd = {"qkv": 6 * T * d * d, "projection": 2 * T * d * d, "mlp in": 8 * T * d * d,
           "mlp out": 8 * T * d * d, "attention QK^T": 2 * T * L * d, "attention PV": 2 * T * L * d}
    seconds = sum(num_layers * f / rates[k] for k, f in fwd.items())  # forward
    seconds += sum(num_layers * f / rates[k] for k, f in fwd.items())  # input gradients
    seconds += sum(num_layers * f / (rates[k] if k.startswith("attention") else rates["weight grad"])
                   for k, f in fwd.items())  # weight gradients (attention: dK, dV)
    out = 2 * T * d * V
    seconds += out / rates["output layer"] + out / rates["output input grad"]
    seconds += out / rates["output weight grad"]
    return 3 * (num_layers * sum(fwd.values()) + out) / seconds


if __name__ == "__main__":
    main()
