"""The default attention (`models/attention.py: matmul_attention`, `attention_impl=None`): values
and gradients equal those of `jax.nn.dot_product_attention`'s XLA path, bidirectional and causal,
in float32 and bfloat16; `dot_product_attention` dispatches by implementation name."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models.attention import dot_product_attention, matmul_attention


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matmul_attention_equals_jax_xla_path(causal, dtype):
    B, L, H, Dh = 2, 9, 3, 4
    ks = jax.random.split(jax.random.key(int(causal)), 4)
    q, k, v = ((2.0 * jax.random.normal(kk, (B, L, H, Dh))).astype(dtype) for kk in ks[:3])
    w = jax.random.normal(ks[3], (B, L, H, Dh))

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) * w)

    ours = lambda q, k, v: matmul_attention(q, k, v, causal=causal)  # noqa: E731
    ref = lambda q, k, v: jax.nn.dot_product_attention(  # noqa: E731
        q, k, v, is_causal=causal, implementation="xla")

    @jax.jit
    def run(q, k, v):
        return [(f(q, k, v), jax.grad(loss(f), argnums=(0, 1, 2))(q, k, v)) for f in (ours, ref)]

    (o, g), (o_ref, g_ref) = run(q, k, v)
    assert o.dtype == o_ref.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
    f32 = lambda x: np.asarray(x.astype(jnp.float32))  # noqa: E731
    np.testing.assert_allclose(f32(o), f32(o_ref), **tol)
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(f32(a), f32(b), **tol)
    if causal:  # the first query sees only the first key
        np.testing.assert_allclose(f32(o[:, 0]), f32(v[:, 0]), rtol=1e-6)


def test_dot_product_attention_dispatches_by_name():
    q, k, v = jax.random.normal(jax.random.key(0), (3, 1, 5, 2, 4))
    plain = matmul_attention(q, k, v, causal=True)
    for impl in (None, "xla", "blockwise"):
        out = dot_product_attention(q, k, v, causal=True, implementation=impl)
        np.testing.assert_allclose(np.asarray(out), np.asarray(plain), rtol=1e-5, atol=1e-6)
