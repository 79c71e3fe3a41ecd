"""Schedules: endpoints, derivative against finite differences, inverse, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion import schedules

ALL = [schedules.get("linear"), schedules.get("loglinear", eps=1e-3), schedules.get("cosine"),
       schedules.get("poly", power=3.0)]


@pytest.mark.parametrize("sched", ALL, ids=lambda s: s.name)
def test_endpoints_monotone_derivative_inverse(sched):
    t = jnp.linspace(0.01, 0.99, 99)
    a = sched.alpha(t)
    assert abs(float(sched.alpha(0.0)) - 1.0) < 1e-6
    assert float(sched.alpha(1.0)) <= 1e-3 + 1e-6
    assert np.all(np.diff(np.asarray(a)) < 0)
    fd = (sched.alpha(t + 1e-3) - sched.alpha(t - 1e-3)) / 2e-3
    np.testing.assert_allclose(sched.dalpha(t), fd, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(jax.vmap(jax.grad(sched.alpha))(t), sched.dalpha(t), rtol=1e-5)
    np.testing.assert_allclose(sched.inverse(a), t, atol=1e-4)


@pytest.mark.parametrize("sched", ALL, ids=lambda s: s.name)
def test_per_sequence_and_per_position_shapes(sched):
    assert sched.alpha(jnp.zeros((4,))).shape == (4,)
    assert sched.alpha(jnp.zeros((4, 7))).shape == (4, 7)
    assert sched.dalpha(jnp.zeros((4, 7))).shape == (4, 7)


def test_unknown_schedule_names_the_field():
    with pytest.raises(ValueError, match="config.process.schedule='sqrt'"):
        schedules.get("sqrt")
