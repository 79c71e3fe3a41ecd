"""Causal block skipping in the blockwise attention: time of one attention layer's
forward + backward pass with the key blocks above the diagonal skipped, against the same
blockwise attention computing every block pair, and against plain `matmul_attention`.

    python benchmarks/attention_causal.py [--lengths=1024,2048] [--batch=1] [--heads=12]
        [--head_dim=64] [--blocks=512,256] [--runs=5] [--dtype=float32]

Each variant is `jit(grad(q, k, v -> sum(attention(q, k, v) * do)))`, q, k, v `[B, L, H, Dh]`;
the time is the median over `--runs` rounds in which every variant runs once, alternating in
this process, so the ratios are robust to the machine's load. Variants:

    skip        `blockwise_attention(causal=True)`: only the pairs of `causal_key_blocks`
    noskip      the same blockwise attention computing all block pairs, the masked ones
                contributing 0 (`attention._attention(..., skip=False)`, the former behaviour)
    bidir       `blockwise_attention(causal=False)`: all pairs, no mask (the no-skip cost)
    matmul      `matmul_attention(causal=True)`: two einsums over `[B, H, L, L]`

'pairs' is the number of block pairs computed with skipping out of all (n_q n_kv); with square
blocks of b at L = n b it is n (n + 1) / 2 of n^2, so the saving tends to one half as L / b
grows. 'max |d|' is the largest absolute difference of the skip variant's gradients from
matmul's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from discrete_diffusion.models import attention  # noqa: E402

VARIANTS = ("skip", "noskip", "bidir", "matmul")


def variant(name: str, block: int):
    """q, k, v -> attention `[B, L, H, Dh]` of the variant `name` (module doc)."""
    if name == "skip":
        return lambda q, k, v: attention.blockwise_attention(q, k, v, causal=True, block_q=block,
                                                             block_kv=block)
    if name == "noskip":
        return lambda q, k, v: attention._attention(q, k, v, True, min(block, q.shape[1]),
                                                    min(block, q.shape[1]), False)
    if name == "bidir":
        return lambda q, k, v: attention.blockwise_attention(q, k, v, block_q=block,
                                                             block_kv=block)
    if name == "matmul":
        return lambda q, k, v: attention.matmul_attention(q, k, v, causal=True)
    raise ValueError(f"unknown variant {name!r}; allowed: {VARIANTS}")


def grad_step(name: str, block: int):
    f = variant(name, block)

    def loss(q, k, v, do):
        return jnp.sum(f(q, k, v).astype(jnp.float32) * do)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1024,2048")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--blocks", default="512,256")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    B, H, Dh = args.batch, args.heads, args.head_dim
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; dtype={args.dtype} B={B} "
          f"H={H} Dh={Dh}; causal attention forward + backward; median of {args.runs} "
          f"alternating rounds")
    print(f"{'L':>5} {'block':>5} {'pairs':>8} {'skip ms':>8} {'noskip ms':>9} {'bidir ms':>8} "
          f"{'matmul ms':>9} {'skip/noskip':>11} {'skip/bidir':>10} {'skip/matmul':>11} "
          f"{'max |d|':>8}")
    for L in (int(x) for x in args.lengths.split(",")):
        rng = np.random.default_rng(L)
        q, k, v = (jnp.asarray(rng.standard_normal((B, L, H, Dh)), dtype) for _ in range(3))
        do = jnp.asarray(rng.standard_normal((B, L, H, Dh)), jnp.float32)
        inputs = (q, k, v, do)
        for block in (int(x) for x in args.blocks.split(",")):
            b = min(block, L)
            steps = {n: grad_step(n, block).lower(*inputs).compile() for n in VARIANTS}
            ref = steps["matmul"](*inputs)
            err = max(float(jnp.max(jnp.abs(a.astype(jnp.float32) - r.astype(jnp.float32))))
                      for a, r in zip(steps["skip"](*inputs), ref, strict=True))
            times = {n: [] for n in VARIANTS}
            for _ in range(args.runs):
                for n in VARIANTS:
                    t = time.perf_counter()
                    jax.block_until_ready(steps[n](*inputs))
                    times[n].append(time.perf_counter() - t)
            med = {n: float(np.median(times[n])) * 1e3 for n in VARIANTS}
            pairs = f"{int(attention.causal_key_blocks(L, b, b).sum())}/{(-(-L // b)) ** 2}"
            print(f"{L:>5} {b:>5} {pairs:>8} {med['skip']:>8.1f} {med['noskip']:>9.1f} "
                  f"{med['bidir']:>8.1f} {med['matmul']:>9.1f} "
                  f"{med['skip'] / med['noskip']:>11.3f} {med['skip'] / med['bidir']:>10.3f} "
                  f"{med['skip'] / med['matmul']:>11.3f} {err:>8.1e}", flush=True)


if __name__ == "__main__":
    main()
