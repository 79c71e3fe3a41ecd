"""models/output_matmul.py: the product equals lax.dot_general's bit for bit, and its gradients
equal autodiff's (float32 and bfloat16 operands, any leading shape) up to summation order, in
their primals' dtypes, under jit and a batch-sharded mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models.layers import _f32_dot_general
from discrete_diffusion.models.output_matmul import output_matmul


def _plain(h, w):
    return _f32_dot_general(h, w, (((h.ndim - 1,), (0,)), ((), ())))


def _case(shape, d, k, dtype, seed=0):
    kh, kw, kg = jax.random.split(jax.random.key(seed), 3)
    h = jax.random.normal(kh, shape + (d,)).astype(dtype)
    w = jax.random.normal(kw, (d, k)).astype(dtype)
    g = jax.random.normal(kg, shape + (k,))  # float32 cotangent, as the logits' loss gives
    return h, w, g


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape,d,k", [((5,), 8, 13), ((2, 7), 16, 101), ((2, 3, 4), 32, 33)])
def test_values_and_gradients_equal_autodiff(shape, d, k, dtype):
    h, w, g = _case(shape, d, k, dtype)
    y, vjp = jax.vjp(jax.jit(output_matmul), h, w)
    y_ref, vjp_ref = jax.vjp(_plain, h, w)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, y_ref)
    (dh, dw), (dh_ref, dw_ref) = vjp(g), vjp_ref(g)
    assert dh.dtype == h.dtype and dw.dtype == w.dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(np.asarray(dh, np.float32), np.asarray(dh_ref, np.float32), **tol)
    np.testing.assert_allclose(np.asarray(dw, np.float32), np.asarray(dw_ref, np.float32), **tol)
    if dtype == jnp.float32:  # and both equal the float64 products
        gg, hh, ww = (np.asarray(a, np.float64) for a in (g, h, w))
        np.testing.assert_allclose(dh, gg @ ww.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dw, hh.reshape(-1, d).T @ gg.reshape(-1, k),
                                   rtol=1e-5, atol=1e-5)


def test_gradient_on_a_batch_sharded_mesh():
    """The trainer's layout: h sharded over the batch on every device of a 1-D mesh (one device
    here unless the session has more); the kernel gradient sums over the shards."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    rows = 2 * len(jax.devices())
    h, w, g = _case((rows, 6), 16, 29, jnp.float32, seed=1)
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    h, g = jax.device_put(h, spec), jax.device_put(g, spec)

    def loss(f, w, h):
        return jnp.sum(f(h, w) * g)

    grads = jax.jit(jax.grad(lambda w, h: loss(output_matmul, w, h), argnums=(0, 1)))(w, h)
    ref = jax.grad(lambda w, h: loss(_plain, w, h), argnums=(0, 1))(w, h)
    for a, b in zip(grads, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
