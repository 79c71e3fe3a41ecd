"""training/ema.py: the EMA equals d e + (1 - d) p wherever that is finite (to the rounding of a
separately compiled formula: XLA may contract a multiply-add in one program and not in the other),
and saturates at the dtype's largest value where it overflows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.training import ema


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("decay", [0.5, 0.9, 0.9999])
def test_equals_the_average(dtype, decay):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    tree = {"w": jax.random.normal(k1, (64, 33), dtype), "b": 1e30 * jax.random.normal(k2, (7,))}
    params = jax.tree.map(lambda x: 0.5 * x + 1.0, tree)
    ours = jax.jit(lambda e, p: ema.ema_update(decay, e, p))(tree, params)
    ref = jax.jit(lambda e, p: jax.tree.map(lambda a, b: decay * a + (1.0 - decay) * b, e, p))(
        tree, params)
    for a, b, e, p in zip(*(jax.tree.leaves(t) for t in (ref, ours, tree, params)), strict=True):
        assert a.dtype == b.dtype
        # two ulps of the terms' magnitude (bf16: one), as one rounding more or less gives
        ulps = 2.4e-7 if a.dtype == jnp.float32 else 8e-3
        scale = np.abs(decay * np.asarray(e, np.float64)) + np.abs((1 - decay) * np.asarray(
            p, np.float64))
        diff = np.abs(np.asarray(b, np.float64) - np.asarray(a, np.float64))
        assert np.all(diff <= ulps * scale), float(np.max(diff / scale))


def test_zero_decay_is_the_parameters():
    params = {"w": jnp.arange(6.0)}
    assert ema.ema_update(0.0, {"w": jnp.zeros(6)}, params) is params


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_saturates_where_the_average_overflows(dtype):
    """e = p = +-M with d = 1/2: in float32 the plain formula gives +-inf (XLA computes (e + p) / 2;
    the check that the case overflows at all), the EMA gives +-M, the exact average. (bfloat16
    arithmetic runs in float32 here, so the plain formula does not overflow there.)"""
    largest = float(jnp.finfo(dtype).max)
    e = jnp.asarray([largest, -largest, 1.0], dtype)
    raw = jax.jit(lambda e, p: 0.5 * e + 0.5 * p)(e, e)
    assert bool(jnp.all(jnp.isfinite(raw))) == (dtype == jnp.bfloat16)
    out = np.asarray(jax.jit(lambda e, p: ema.ema_update(0.5, e, p))(e, e), np.float32)
    np.testing.assert_array_equal(out, np.asarray([largest, -largest, 1.0], np.float32))
