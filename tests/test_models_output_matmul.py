"""models/output_matmul.py: the product equals lax.dot_general's bit for bit, and its gradients
equal autodiff's (float32 and bfloat16 operands, any leading shape) up to summation order, in
their primals' dtypes, under jit and a batch-sharded mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models.layers import Mlp, _f32_dot_general
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


def test_several_output_axes_equal_autodiff():
    """W [D, 3, H, Dh] (the attention's qkv kernel, kept unmerged): y [..., 3, H, Dh], the
    values bit for bit and both gradients as autodiff's up to summation order."""
    kh, kw, kg = jax.random.split(jax.random.key(3), 3)
    h = jax.random.normal(kh, (2, 7, 16))
    w = jax.random.normal(kw, (16, 3, 2, 5))
    g = jax.random.normal(kg, (2, 7, 3, 2, 5))

    def plain(h, w):
        return _f32_dot_general(h, w, (((2,), (0,)), ((), ())))

    y, vjp = jax.vjp(jax.jit(output_matmul), h, w)
    y_ref, vjp_ref = jax.vjp(plain, h, w)
    assert y.shape == (2, 7, 3, 2, 5)
    np.testing.assert_array_equal(y, y_ref)
    for a, b in zip(vjp(g), vjp_ref(g), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


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


class _DenseFc1Mlp(Mlp):
    """layers.Mlp with fc1 as nn.Dense (the form before output_matmul)."""

    def _fc1(self, fc1, x):
        return fc1(x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_mlp_fc1_equals_nn_dense_and_moves_fewer_bytes(dtype):
    """layers.Mlp's fc1 (output_matmul, then the bias): nn.Dense's parameters, values and
    gradients up to summation order, in the compute dtype; XLA's bytes accessed of the compiled
    forward and backward pass below the nn.Dense form's (the reason for it)."""
    x = jax.random.normal(jax.random.key(0), (2, 64, 32))
    ours, ref = Mlp(dtype=dtype), _DenseFc1Mlp(dtype=dtype)
    params = ours.init(jax.random.key(1), x)["params"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, ref.init(jax.random.key(1), x)["params"])
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape),
                          params)
    y, y_ref = ours.apply({"params": params}, x), ref.apply({"params": params}, x)
    assert y.dtype == y_ref.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(np.float32(y), np.float32(y_ref), **tol)

    def compiled(module):
        def loss(p, x):
            return jnp.sum(jnp.sin(module.apply({"params": p}, x).astype(jnp.float32)))
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, x).compile()

    c, c_ref = compiled(ours), compiled(ref)
    for a, b in zip(jax.tree.leaves(c(params, x)), jax.tree.leaves(c_ref(params, x)),
                    strict=True):
        scale = max(float(jnp.max(jnp.abs(b))), 1.0)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                   atol=tol["atol"] * scale)
    if dtype == jnp.float32:
        assert c.cost_analysis()["bytes accessed"] < c_ref.cost_analysis()["bytes accessed"]
