"""finite_guard: NaN / +inf / all -inf network outputs raise once at the end of sampling, naming
t, for masked and uniform processes alike; temperature=nan and num_samples=0 are consistent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.sampling import compiled, finite_guard

K, L, N = 3, 4, 2


def _config(process: str, temperature: float = 1.0):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser", "time_conditioning": True},
        "sampler": {"name": "ancestral", "num_steps": 4, "temperature": temperature},
    })


def model_fn(params, x_t, t):
    """Zero logits, but params['bad'] on row 1 once t < params['below']."""
    logits = jnp.zeros(x_t.shape + (K,))
    rows = (jnp.arange(x_t.shape[0]) == 1)[:, None, None] & (t < params["below"]).reshape(-1, 1, 1)
    return jnp.where(rows, params["bad"], logits)


def _sample(process, bad, below=2.0, num_samples=N, temperature=1.0):
    params = {"bad": jnp.float32(bad), "below": jnp.float32(below)}
    return dd.generate(jax.random.key(0), model_fn, _config(process, temperature), num_samples, L,
                       params=params).tokens


@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_nonfinite_logits_raise_naming_t(process):
    assert _sample(process, jnp.nan, below=-1.0).shape == (N, L)  # never bad: fine
    for bad in (jnp.nan, -jnp.inf, jnp.inf):
        with pytest.raises(finite_guard.NonFiniteSamplingError, match=r"t=1\.0 \(sample row 1"):
            _sample(process, bad)
    # first appearing mid-run (t = 0.5 on the 4-step grid 1, 0.75, 0.5, 0.25): that step is named
    with pytest.raises(finite_guard.NonFiniteSamplingError, match=r"t=0\.5 "):
        _sample(process, jnp.nan, below=0.6)
    # the check is part of the compiled sampler's outputs, not a host callback
    fn = next(reversed(compiled._CACHE.values()))
    params = {"bad": jnp.float32(0), "below": jnp.float32(0)}
    assert "callback" not in str(jax.make_jaxpr(fn)(jax.random.key(0), params, None, None))


@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_temperature_nan_and_zero_samples(process):
    with pytest.raises(ValueError, match="config.sampler.temperature=nan"):
        _sample(process, 0.0, temperature=float("nan"))
    out = _sample(process, 0.0, num_samples=0)
    assert out.shape == (0, L) and out.dtype == jnp.int32
    with pytest.raises(ValueError, match="num_samples=-1"):
        _sample(process, 0.0, num_samples=-1)


def test_bad_rows_by_enumeration():
    x = np.zeros((3, 2, K), np.float32)
    x[1, 0, 2] = np.nan
    x[2, 1, :] = -np.inf
    assert finite_guard.bad_rows(jnp.asarray(x)).tolist() == [False, True, True]
    x[2, 1, 0] = 0.0  # a masked class (-inf) beside a finite one is fine
    assert finite_guard.bad_rows(jnp.asarray(x)).tolist() == [False, True, False]
