"""Processes: marginals, forward sampling and both bridges against the enumeration oracle."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.testing import oracle


@pytest.mark.parametrize("name", ["masked", "uniform"])
def test_marginal_probs_and_per_position_time(name):
    proc = getattr(dd.processes, name)(4)
    x0 = jnp.array([[0, 3, 1]])
    t = jnp.array([[0.1, 0.5, 0.9]])  # per position
    got = np.asarray(proc.marginal_probs(x0, t))
    for i in range(3):
        ref = oracle.kernel(name, 4, float(proc.alpha(t[0, i])))[int(x0[0, i])]
        np.testing.assert_allclose(got[0, i], ref, atol=1e-6)
    assert proc.marginal_probs(x0, jnp.array([0.3])).shape == (1, 3, proc.num_states)


@pytest.mark.parametrize("name", ["masked", "uniform"])
def test_sample_marginal_frequencies(name):
    proc = getattr(dd.processes, name)(4)
    x0 = jnp.full((200_000, 1), 2, jnp.int32)
    x_t = np.asarray(proc.sample_marginal(jax.random.key(0), x0, jnp.full((200_000,), 0.6)))
    freq = np.bincount(x_t[:, 0], minlength=proc.num_states) / len(x_t)
    ref = oracle.kernel(name, 4, float(proc.alpha(0.6)))[2]
    np.testing.assert_allclose(freq, ref, atol=5e-3)  # 5 sigma at n = 2e5


@pytest.mark.parametrize("name", ["masked", "uniform"])
@pytest.mark.parametrize("t,s", [(0.9, 0.6), (0.5, 0.1), (0.3, 0.0)])
def test_bridges_give_the_exact_reverse_kernel(name, t, s):
    p0 = oracle.toy_law(3, 2, seed=4)
    proc = getattr(dd.processes, name)(3)
    a_t, a_s = float(proc.alpha(t)), float(proc.alpha(s))
    orc = oracle.Oracle(p0, name, a_t)
    xs = orc.support()
    x_t = jnp.asarray(xs, jnp.int32)
    tt, ss = jnp.full((len(xs),), t), jnp.full((len(xs),), s)
    exact = np.stack([oracle.exact_reverse_kernel(p0, name, a_t, a_s, x) for x in xs])
    rho = jnp.asarray(np.stack([orc.loo(x) for x in xs]), jnp.float32)
    mu = jnp.asarray(np.stack([orc.denoiser(x) for x in xs]), jnp.float32)
    np.testing.assert_allclose(proc.bridge_plugin(x_t, tt, ss, rho), exact, atol=1e-6)
    np.testing.assert_allclose(proc.bridge_mixture(x_t, tt, ss, mu), exact, atol=1e-6)
    plug_mu = np.asarray(proc.bridge_plugin(x_t, tt, ss, mu))
    if name == "masked":  # the two forms coincide for masked diffusion
        np.testing.assert_allclose(plug_mu, exact, atol=1e-6)
    elif s > 0:  # ... and not for uniform diffusion: the plug-in needs the LOO posterior
        assert np.abs(plug_mu - exact).max() > 0.01


def test_from_config_errors_name_the_field():
    with pytest.raises(ValueError, match="config.process.num_classes"):
        dd.processes.from_config(ml_collections.ConfigDict({"name": "masked", "num_classes": 1}))
    with pytest.raises(ValueError, match="config.process.name='gauss'"):
        dd.processes.from_config(ml_collections.ConfigDict({"name": "gauss", "num_classes": 5}))
    proc = dd.processes.from_config(ml_collections.ConfigDict(
        {"name": "masked", "num_classes": 5, "schedule": "poly", "schedule_power": 3.0}))
    assert proc.mask_id == 5 and proc.num_states == 6 and proc.schedule.power == 3.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_times_outside_0_1_are_refused_before_jit(bad):
    proc = dd.processes.uniform(4)
    x0 = jnp.array([[0, 3, 1]])
    t = jnp.array([bad])
    match = r"t \(time of the uniform process\) must lie in \[0, 1\]"
    with pytest.raises(ValueError, match=match):
        proc.alpha(t)
    with pytest.raises(ValueError, match=match):
        proc.dalpha(t)
    with pytest.raises(ValueError, match=match):
        proc.marginal_probs(x0, t)
    with pytest.raises(ValueError, match=match):
        proc.sample_marginal(jax.random.key(0), x0, t)
    logits = jnp.zeros((1, 3, 4))
    for convert in (dd.parameterizations.denoiser_to_loo, dd.parameterizations.loo_to_score):
        with pytest.raises(ValueError, match=match):
            convert(proc, logits, x0, t)
    # Traced times are not looked at (no host callback inside jit).
    jax.jit(proc.alpha)(t)
    proc.alpha(jnp.array([0.0, 0.5, 1.0]))
