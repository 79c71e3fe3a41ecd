"""The two-einsum attention (`models.attention.matmul_attention`), forward and backward, against
the forms it had before, at the small model's shape by default:

    token-major einsums      the einsums on the [B, L, H, Dh] arrays, autodiff (seventh session)
    heads-major, autodiff    q, k, v transposed to [B, H, L, Dh], P V written as [B, H, L, Dh],
                             differentiated through the softmax (until the ninth session)
    matmul_attention (now)   heads-major, with its custom VJP (ds = p (dp - D) on the stored p)
    blockwise                `dot_product_attention(implementation='blockwise')` (the CPU default
                             above one block of 512)
    blockwise QxK            `blockwise_attention` with block_q Q and block_kv K, one row per
                             entry of --blocks (e.g. --blocks 512x1024,1024x512)

    python benchmarks/attention_layouts.py [--batch 32] [--seq_len 256] [--heads 8] \\
        [--head_dim 32] [--causal] [--runs 9] [--blocks QxK,...]

Printed per form: XLA's bytes accessed, the median time over --runs rounds that run each form
once (alternating, in this process), its ratio to the token-major form, and the largest
difference of the loss and gradients from it.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from alternating import compare_gradients  # noqa: E402
from train_throughput import machine_line  # noqa: E402

from discrete_diffusion.models.attention import (  # noqa: E402
    blockwise_attention,
    dot_product_attention,
    matmul_attention,
)


def token_major(q, k, v, causal=False):
    """matmul_attention's arithmetic with the einsums on [B, L, H, Dh] operands (float32)."""
    q = q * jnp.float32(1.0 / math.sqrt(q.shape[-1]))
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    if causal:
        L = q.shape[1]
        s = jnp.where(jnp.tril(jnp.ones((L, L), bool)), s,
                      jnp.float32(-0.7 * float(jnp.finfo(jnp.float32).max)))
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v)


def heads_major_autodiff(q, k, v, causal=False):
    """matmul_attention's forward (float32) differentiated by autodiff through the softmax."""
    q = q * jnp.float32(1.0 / math.sqrt(q.shape[-1]))
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    if causal:
        L = q.shape[2]
        s = jnp.where(jnp.tril(jnp.ones((L, L), bool)), s,
                      jnp.float32(-0.7 * float(jnp.finfo(jnp.float32).max)))
    return jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s, axis=-1), v), 1, 2)


def blockwise(q, k, v, causal=False):
    return dot_product_attention(q, k, v, causal=causal, implementation="blockwise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head_dim", type=int, default=32)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--blocks", default="", help="Extra blockwise rows 'QxK,...'.")
    args = parser.parse_args()

    shape = (args.batch, args.seq_len, args.heads, args.head_dim)
    q, k, v, w = (jax.random.normal(key, shape) for key in jax.random.split(jax.random.key(0), 4))
    forms = {"token-major einsums": token_major, "heads-major, autodiff": heads_major_autodiff,
             "matmul_attention (now)": matmul_attention, "blockwise": blockwise}
    for spec in filter(None, args.blocks.split(",")):
        bq, bk = (int(n) for n in spec.split("x"))
        forms[f"blockwise {spec}"] = functools.partial(blockwise_attention, block_q=bq,
                                                       block_kv=bk)
    losses = {name: (lambda q, k, v, fn=fn: jnp.sum(fn(q, k, v, causal=args.causal) * w))
              for name, fn in forms.items()}
    rows = compare_gradients(losses, (q, k, v), (0, 1, 2), args.runs)
    print(f"jax {jax.__version__}; q, k, v {list(shape)}, causal={args.causal}; median of "
          f"{args.runs} alternating runs; {machine_line()}")
    for row in rows:
        print(f"  {row.name:24s} {row.compiled.cost_analysis()['bytes accessed'] / 1e9:6.3f} GB "
              f"{1e3 * row.seconds:7.1f} ms  {row.ratio:5.2f}x  max |diff| {row.diff:.1e}")

if __name__ == "__main__":
    main()
