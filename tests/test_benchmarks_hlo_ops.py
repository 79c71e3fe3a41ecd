"""benchmarks/hlo_ops.py: the kinds and dot FLOPs it reads from a compiled module's HLO text,
against a program whose products and their FLOPs are known."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from hlo_ops import op_kinds, parse_computations  # noqa: E402


def _program():
    """Forward and backward of sum(gelu(x W) V) and a batched product: known FLOPs."""
    def f(x, w, v):
        h = jax.nn.gelu(x @ w)  # [256, 128] = [256, 64] x [64, 128]
        s = jnp.einsum("bld,bmd->blm", h.reshape(4, 64, 128), h.reshape(4, 64, 128))
        return jnp.sum(h @ v) + jnp.sum(s)

    x, w, v = jnp.ones((256, 64)), jnp.ones((64, 128)), jnp.ones((128, 32))
    return jax.jit(jax.grad(f, argnums=(1, 2))).lower(x, w, v).compile()


def test_matmul_flops_are_those_of_the_gradient_products():
    """The gradient needs x W (forward), dW = x^T dh, dV = h^T 1, dh = 1 V^T and the einsum's two
    cotangent products (its forward, and h V's, are dead code): 2 + 2 products of 256 x 64 x 128,
    2 of 256 x 128 x 32, 2 batched ones of 4 x 64 x 64 x 128, 2 FLOPs per multiply-add."""
    text = _program().as_text()
    ops = op_kinds(text)
    comps = parse_computations(text)
    entry = comps[next(name for name in comps if name.startswith("main"))]
    flops = sum(ops[i.name].flops for i in entry if ops[i.name].kind == "matmul")
    assert flops == 2 * (2 * 256 * 64 * 128 + 2 * 256 * 128 * 32 + 2 * 4 * 64 * 64 * 128)
    assert any(op.kind == "elementwise" and "tanh" in op.source for op in ops.values())


def test_kinds_of_single_operations():
    text = jax.jit(lambda x, i: (jnp.sum(x, axis=0), x[i], jnp.sort(x, axis=1), x.T + 0)).lower(
        jnp.ones((8, 16)), jnp.array([1, 3])).compile().as_text()
    kinds = {op.kind for op in op_kinds(text).values()}
    assert {"reduce", "gather", "sort"} <= kinds
    assert "matmul" not in kinds
