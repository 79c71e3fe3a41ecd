"""Attention cost, forward + backward: XLA's bytes accessed and FLOPs, and the measured time
against a plain-matmul reference.

    python benchmarks/attention_bytes.py [--shapes=small,big] [--impls=matmul,xla,blockwise]
        [--runs=10] [--dtype=float32] [--block]

For each shape, each implementation's `q, k, v -> grad of sum(attention(q, k, v) * do)` (the
forward pass and the backward pass of one attention layer, q, k, v `[B, L, H, Dh]`) is jitted and
compiled; its `cost_analysis()` gives the bytes accessed and the FLOPs as XLA counts them. The
time is the median over `--runs` rounds in which every implementation runs once, alternating in
this process, so the ratio to the reference ('t / plain') is robust to the machine's load.

Implementations:
    plain      the reference, written here as md4 writes it: s = einsum(q, k^T) * scale, masked if
               causal, softmax in float32, einsum(p, v) (no vmap, no grouped heads)
    matmul     the library's two-einsum `attention.matmul_attention` (`attention_impl='matmul'`)
    default    `attention.dot_product_attention(..., implementation=None)`, what
               `DiffusionTransformer(attention_impl=None)` calls: matmul, or on the CPU
               blockwise once L exceeds a block (512), i.e. at the big shape
    xla        `jax.nn.dot_product_attention(..., implementation='xla')` (grouped-query einsums
               under a vmap over the head groups)
    blockwise  `attention.blockwise_attention` (online softmax, blockwise backward pass)

With `--block` the whole attention sub-layer is measured instead (qkv projection, rotary, the
attention, the output projection: `layers.Attention`), gradients with respect to its input and
parameters.

Columns: XLA's 'bytes accessed' and FLOPs of the compiled program and their ratio to the
reference; 'LxL (moves)': how many `[B, H, L, L]` arrays its top level materialises, and how
many of those are copies/transposes (a fused elementwise op that writes the probabilities again
counts as one array); the median time and its ratio to the reference; the largest absolute
difference of the gradients from the reference's. XLA counts the body of a loop once, not once
per trip: the blockwise path's FLOPs and bytes are undercounted by about its number of key
blocks whenever L exceeds a block (512), i.e. at the big shape.

Shapes (`--shapes`): small = batch 32, L 256, d 256, 8 heads (the issue's small model, one of its
6 layers); big = batch 2, L 1024, d 768, 12 heads (one of the 12 layers of the small OWT model).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from discrete_diffusion.models import attention, layers  # noqa: E402

SHAPES = {"small": dict(B=32, L=256, D=256, H=8), "big": dict(B=2, L=1024, D=768, H=12)}


def plain_attention(q, k, v, causal=False):
    """The reference: two einsums and a float32 softmax, `[B, L, H, Dh]` in and out."""
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    s = s * jnp.float32(1.0 / math.sqrt(q.shape[-1]))
    if causal:
        L = q.shape[1]
        s = jnp.where(jnp.tril(jnp.ones((L, L), bool)), s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)


def impl_fn(name, causal):
    if name == "plain":
        return lambda q, k, v: plain_attention(q, k, v, causal)
    if name in ("default", "matmul"):
        impl = None if name == "default" else name
        return lambda q, k, v: attention.dot_product_attention(q, k, v, causal=causal,
                                                               implementation=impl)
    if name == "xla":
        return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal,
                                                            implementation="xla")
    if name == "blockwise":
        return lambda q, k, v: attention.blockwise_attention(q, k, v, causal=causal)
    raise ValueError(f"unknown implementation {name!r}")


def core_step(name, causal):
    """jit(q, k, v, do -> (dq, dk, dv)) of the attention core."""
    f = impl_fn(name, causal)

    def loss(q, k, v, do):
        return jnp.sum(f(q, k, v).astype(jnp.float32) * do)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


class _Plain(layers.Attention):
    """layers.Attention with the reference core (same parameters)."""

    @staticmethod
    def _core(q, k, v, causal, impl, block=512):
        return plain_attention(q, k, v, causal)


def block_step(name, causal, H, dtype):
    """jit(params, x, do -> (dparams, dx)) of the attention sub-layer (`layers.Attention`)."""
    if name == "plain":
        module = _Plain(H, causal=causal, dtype=dtype)
    else:
        module = layers.Attention(H, causal=causal, dtype=dtype,
                                  attention_impl=None if name == "default" else name)

    def loss(params, x, do):
        return jnp.sum(module.apply({"params": params}, x).astype(jnp.float32) * do)

    return module, jax.jit(jax.grad(loss, argnums=(0, 1)))


_SHAPE = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.-]+)\s*=\s*\w+\[([\d,]*)\]")


def square_arrays(compiled, n_elements: int) -> tuple[int, int]:
    """(arrays of `n_elements` elements, i.e. [B, H, L, L], that the compiled program's top
    level materialises; how many of them are copies or transposes), from its optimised HLO."""
    text = compiled.as_text()
    entry = text[text.index("\nENTRY"):]
    entry = entry[:entry.index("\n}")]
    total = moves = 0
    for line in entry.split("\n")[1:]:
        m = _SHAPE.match(line)
        if not m or not m.group(2) or "bitcast(" in line:
            continue
        if math.prod(int(d) for d in m.group(2).split(",")) == n_elements:
            total += 1
            moves += ("copy" in m.group(1)) or ("transpose" in m.group(1))
    return total, moves


def cost(compiled) -> tuple[float, float]:
    c = compiled.cost_analysis()
    if isinstance(c, (list, tuple)):
        c = c[0]
    return float(c.get("bytes accessed", float("nan"))), float(c.get("flops", float("nan")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="small,big")
    parser.add_argument("--impls", default="matmul,xla,blockwise")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--block", action="store_true",
                        help="measure the attention sub-layer (projections, rotary) instead")
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    impls = ["plain"] + [n for n in args.impls.split(",") if n and n != "plain"]
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; dtype={args.dtype} "
          f"causal={args.causal} {'attention sub-layer' if args.block else 'attention core'}, "
          f"forward + backward; median of {args.runs} alternating rounds")
    for shape_name in args.shapes.split(","):
        s = SHAPES[shape_name]
        B, L, D, H = s["B"], s["L"], s["D"], s["H"]
        rng = np.random.default_rng(0)
        if args.block:
            x = jnp.asarray(rng.standard_normal((B, L, D)), jnp.float32)
            do = jnp.asarray(rng.standard_normal((B, L, D)), jnp.float32)
            steps = {}
            for n in impls:
                module, f = block_step(n, args.causal, H, dtype)
                steps[n] = f
            params = layers.Attention(H, dtype=dtype).init(jax.random.PRNGKey(0), x)["params"]
            inputs = (params, x, do)
        else:
            q, k, v = (jnp.asarray(rng.standard_normal((B, L, H, D // H)), dtype) for _ in range(3))
            do = jnp.asarray(rng.standard_normal((B, L, H, D // H)), jnp.float32)
            steps = {n: core_step(n, args.causal) for n in impls}
            inputs = (q, k, v, do)
        compiled = {n: f.lower(*inputs).compile() for n, f in steps.items()}
        ref = jax.tree.leaves(compiled["plain"](*inputs))
        err = {}
        for n in impls:
            out = jax.tree.leaves(compiled[n](*inputs))
            err[n] = max(float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))))
                         for a, b in zip(out, ref, strict=True))
        times = {n: [] for n in impls}
        for _ in range(args.runs):
            for n in impls:
                t = time.perf_counter()
                jax.block_until_ready(compiled[n](*inputs))
                times[n].append(time.perf_counter() - t)
        med = {n: float(np.median(times[n])) for n in impls}
        print(f"\n{shape_name}: B={B} L={L} d={D} H={H} Dh={D // H}")
        print(f"{'impl':<10} {'bytes accessed':>15} {'vs plain':>9} {'GFLOP':>8} {'vs plain':>9} "
              f"{'LxL (moves)':>11} {'ms':>9} {'t / plain':>9} {'max |grad - plain|':>19}")
        b0, f0 = cost(compiled["plain"])
        for n in impls:
            b, f = cost(compiled[n])
            sq, mv = square_arrays(compiled[n], B * H * L * L)
            print(f"{n:<10} {b / 1e6:>12.1f} MB {b / b0:>9.3f} {f / 1e9:>8.3f} {f / f0:>9.3f} "
                  f"{f'{sq} ({mv})':>11} {med[n] * 1e3:>9.1f} {med[n] / med['plain']:>9.3f} {err[n]:>19.2e}")


if __name__ == "__main__":
    main()
