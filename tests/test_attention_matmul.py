"""The two-einsum attention (`models/attention.py: matmul_attention`, `attention_impl='matmul'`,
and the default `None` for sequences of at most one block or off the CPU): values and gradients
equal those of `jax.nn.dot_product_attention`'s XLA path, bidirectional and causal, in float32 and
bfloat16; `dot_product_attention` dispatches by implementation name, and None by
`auto_implementation`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models import get_model
from discrete_diffusion.models.attention import (
    auto_implementation,
    balanced_block,
    blockwise_attention,
    dot_product_attention,
    matmul_attention,
)


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
    # The gradients come from FlashAttention's ds = p (dp - D), D_i = do_i . o_i, not autodiff
    # through the softmax: float32 rounding differs by a few 1e-6 where dp - D cancels
    # (test_matmul_attention_matches_float64 bounds both against the exact gradient).
    gtol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else tol
    f32 = lambda x: np.asarray(x.astype(jnp.float32))  # noqa: E731
    np.testing.assert_allclose(f32(o), f32(o_ref), **tol)
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(f32(a), f32(b), **gtol)
    if causal:  # the first query sees only the first key
        np.testing.assert_allclose(f32(o[:, 0]), f32(v[:, 0]), rtol=1e-6)


def _attention_float64(q, k, v, w, causal):
    """Exact (float64 NumPy) o and the gradients of sum(w * o) in q, k, v, [B, L, H, Dh]:
    s = q k^T / sqrt(Dh) (masked), p = softmax(s), o = p v; dv = p^T w, dp = w v^T,
    ds = p (dp - sum_j p dp), dq = ds k / sqrt(Dh), dk = ds^T q / sqrt(Dh)."""
    q, k, v, w = (np.swapaxes(np.asarray(x, np.float64), 1, 2) for x in (q, k, v, w))
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = np.einsum("bhqk,bhkd->bhqd", p, v)
    dv = np.einsum("bhqk,bhqd->bhkd", p, w)
    dp = np.einsum("bhqd,bhkd->bhqk", w, v)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True))
    dq = np.einsum("bhqk,bhkd->bhqd", ds, k) * scale
    dk = np.einsum("bhqk,bhqd->bhkd", ds, q) * scale
    return [np.swapaxes(x, 1, 2) for x in (o, dq, dk, dv)]


def test_float64_reference_is_the_gradient():
    """The reference's gradients against central differences of its own output (float64)."""
    rng = np.random.default_rng(0)
    q, k, v, w = (rng.standard_normal((1, 4, 2, 3)) for _ in range(4))
    _, dq, dk, dv = _attention_float64(q, k, v, w, True)
    eps = 1e-6

    def loss(args, arg, x):
        return np.sum(w * _attention_float64(
            *[x if i == arg else args[i] for i in range(3)], w, True)[0])

    for arg, grad in ((0, dq), (1, dk), (2, dv)):
        for index in [(0, 0, 0, 0), (0, 2, 1, 2), (0, 3, 0, 1)]:
            args = [q, k, v]
            plus, minus = (x.copy() for x in (args[arg], args[arg]))
            plus[index] += eps
            minus[index] -= eps
            numeric = (loss(args, arg, plus) - loss(args, arg, minus)) / (2 * eps)
            assert abs(numeric - grad[index]) < 1e-7


@pytest.mark.parametrize("causal", [False, True])
def test_matmul_attention_matches_float64(causal):
    """float32 values and gradients within a few float32 roundings of the exact ones (inputs of
    scale 2, a peaked softmax): measured max error 5e-6 over 5 seeds, against 2.3e-6 for
    autodiff through jax's XLA path."""
    for seed in range(3):
        ks = jax.random.split(jax.random.key(seed), 4)
        q, k, v = (2.0 * jax.random.normal(kk, (2, 9, 3, 4)) for kk in ks[:3])
        w = jax.random.normal(ks[3], (2, 9, 3, 4))
        o = matmul_attention(q, k, v, causal=causal)
        grads = jax.jit(jax.grad(lambda q, k, v, w: jnp.sum(
            w * matmul_attention(q, k, v, causal=causal)), argnums=(0, 1, 2)))(q, k, v, w)
        exact = _attention_float64(q, k, v, w, causal)
        for got, want in zip([o, *grads], exact, strict=True):
            np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=1e-5)


def test_dot_product_attention_dispatches_by_name():
    q, k, v = jax.random.normal(jax.random.key(0), (3, 1, 5, 2, 4))
    plain = matmul_attention(q, k, v, causal=True)
    for impl in (None, "matmul", "xla", "blockwise"):
        out = dot_product_attention(q, k, v, causal=True, implementation=impl)
        np.testing.assert_allclose(np.asarray(out), np.asarray(plain), rtol=1e-5, atol=1e-6)


def test_auto_implementation_rule():
    """None: blockwise on the CPU once the sequence spans more than one block, else matmul."""
    assert auto_implementation(1024, 512, "cpu") == "blockwise"
    assert auto_implementation(513, 512, "cpu") == "blockwise"
    assert auto_implementation(512, 512, "cpu") == "matmul"
    assert auto_implementation(4096, 512, "gpu") == "matmul"
    assert auto_implementation(4096, 512, "tpu") == "matmul"
    assert [balanced_block(L, 512) for L in (1024, 784, 1025, 2048, 513)] == [512, 392, 342, 512, 257]


@pytest.mark.parametrize("causal", [False, True])
def test_default_attention_is_the_auto_choice_bit_for_bit(causal):
    """implementation=None runs exactly what auto_implementation names (here on the CPU): the
    blockwise path in balanced blocks when L > block, the matmul path otherwise, values and
    gradients bit for bit."""
    assert jax.default_backend() == "cpu"
    q, k, v, w = jax.random.normal(jax.random.key(1), (4, 2, 9, 3, 4))

    def grads(fn):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * w),
                                          argnums=(0, 1, 2)))(q, k, v)

    # L = 9 > block 4: three balanced blocks of 3 (not 4 + 4 + a padded 4)
    for block, ref in ((4, lambda q, k, v: blockwise_attention(q, k, v, causal=causal,
                                                               block_q=3, block_kv=3)),
                       (9, lambda q, k, v: matmul_attention(q, k, v, causal=causal))):
        got = grads(lambda q, k, v, b=block: dot_product_attention(q, k, v, causal=causal,
                                                                    block=b))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(grads(ref)), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_matmul_is_a_valid_attention_impl():
    from configs import synthetic_absorbing

    config = synthetic_absorbing.get_config()
    config.model.attention_impl = "matmul"
    assert get_model(config, 5, 6).attention_impl == "matmul"
