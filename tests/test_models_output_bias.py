"""models/output_bias.py and layers.OutputDense: the bias gradient as 1^T G equals the column sum,
and the output layer keeps nn.Dense's parameters and forward values."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models import layers
from discrete_diffusion.models.output_bias import add_bias


@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 11), (0, 4), (3, 1, 9000)])
def test_bias_gradient_is_the_column_sum(shape):
    ky, kb, kg = jax.random.split(jax.random.key(0), 3)
    y = jax.random.normal(ky, shape)
    b = jax.random.normal(kb, shape[-1:])
    g = jax.random.normal(kg, shape)
    out, vjp = jax.vjp(add_bias, y, b)
    np.testing.assert_array_equal(out, y + b)
    dy, db = vjp(g)
    np.testing.assert_array_equal(dy, g)
    want = np.asarray(g, np.float64).reshape(-1, shape[-1]).sum(0)
    np.testing.assert_allclose(db, want, rtol=1e-5, atol=1e-5 * max(1, int(np.prod(shape[:-1]))))
    # the same as autodiff of a plain y + b, to float32 summation order
    _, plain = jax.vjp(lambda y, b: y + b, y, b)
    np.testing.assert_allclose(db, plain(g)[1], rtol=1e-5, atol=1e-4)


def test_bias_gradient_keeps_the_bias_dtype():
    y = jnp.ones((4, 6), jnp.float32)
    b = jnp.zeros((6,), jnp.bfloat16)
    _, vjp = jax.vjp(add_bias, y, b)
    dy, db = vjp(jnp.ones((4, 6), jnp.float32))
    assert dy.dtype == jnp.float32 and db.dtype == jnp.bfloat16
    np.testing.assert_array_equal(db.astype(jnp.float32), np.full(6, 4.0))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_dense_has_dense_parameters_and_values(dtype):
    """Same parameter tree as the nn.Dense it replaced, the same logits bit for bit, and
    gradients equal to nn.Dense's up to float32 summation order."""
    h = jax.random.normal(jax.random.key(1), (2, 5, 8))
    ours = layers.OutputDense(13, dtype=dtype)
    dense = nn.Dense(13, dtype=dtype, kernel_init=nn.initializers.zeros_init(),
                     dot_general=layers._f32_dot_general)
    p = ours.init(jax.random.key(2), h)
    assert jax.tree.map(jnp.shape, p) == jax.tree.map(jnp.shape, dense.init(jax.random.key(2), h))
    assert jax.tree.map(lambda x: x.dtype, p) == jax.tree.map(lambda x: x.dtype,
                                                       dense.init(jax.random.key(2), h))
    p = jax.tree.map(lambda x: jax.random.normal(jax.random.key(3), x.shape, x.dtype), p)
    np.testing.assert_array_equal(ours.apply(p, h), dense.apply(p, h))
    assert ours.apply(p, h).dtype == jnp.float32

    def loss(module, p):
        return jnp.sum(jnp.sin(module.apply(p, h)))

    g_ours, g_dense = jax.grad(loss, 1)(ours, p), jax.grad(loss, 1)(dense, p)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 g_ours, g_dense)
