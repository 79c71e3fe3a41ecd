"""Psi-samplers: marginal preservation given x0 for any kappa, ReMDM = Psi with mapped kappa,
kappa = 1 is exact with the exact model."""


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.sampling import psi
from discrete_diffusion.testing import oracle

K = 4


@pytest.mark.parametrize("name", ["masked", "uniform"])
@pytest.mark.parametrize("kappa", [0.0, 0.35, 1.0])
@pytest.mark.parametrize("bridge", ["loo_plugin", "denoiser_mixture"])
def test_psi_kernel_given_x0_maps_q_t_to_q_s(name, kappa, bridge):
    proc = getattr(dd.processes, name)(K)
    t, s = 0.7, 0.4
    states = jnp.arange(proc.num_states)[:, None]  # every z_t, L = 1
    for x0 in range(K):
        logits = jnp.where(jax.nn.one_hot(x0, K) > 0, 0.0, -60.0)[None, None].repeat(len(states), 0)
        kern = psi.psi_kernel(proc, "denoiser", logits, states, jnp.full((len(states),), t),
                              jnp.full((len(states),), s), kappa, bridge)[:, 0]  # [V(z_t), V(z_s)]
        q_t = np.asarray(proc.marginal_probs(jnp.array([[x0]]), jnp.array([t])))[0, 0]
        q_s = np.asarray(proc.marginal_probs(jnp.array([[x0]]), jnp.array([s])))[0, 0]
        np.testing.assert_allclose(q_t @ np.asarray(kern), q_s, atol=1e-6)


def test_remdm_equals_psi_with_mapped_kappa():
    proc = dd.processes.masked(K)
    key = jax.random.key(0)
    mu = jax.nn.softmax(2 * jax.random.normal(key, (64, 3, K)), -1)
    x_t = jax.random.randint(jax.random.key(1), (64, 3), 0, K + 1)
    t = jax.random.uniform(jax.random.key(2), (64,), minval=0.2, maxval=1.0)
    s = t * jax.random.uniform(jax.random.key(3), (64,))
    sigma = psi.sigma_max(proc, t, s) * jax.random.uniform(jax.random.key(4), (64,))
    kappa = psi.kappa_from_sigma(proc, t, s, sigma)[:, None]
    a = psi.remdm_kernel(proc, mu, x_t, t, s, sigma[:, None])
    b = psi.psi_kernel(proc, "denoiser", jnp.log(mu), x_t, t, s, kappa)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.asarray(a).sum(-1), 1.0, atol=1e-5)


P0 = oracle.toy_law(3, 2, seed=1)


def _config(process, parameterization, **sampler):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": 3},
        "model": {"parameterization": parameterization},
        "sampler": {"name": "psi", "num_steps": 100, **sampler},
    })


@pytest.mark.parametrize("process,parameterization", [("masked", "denoiser"), ("uniform", "loo")])
def test_psi_with_kappa_one_reaches_the_noise_floor(process, parameterization):
    n = 20_000
    bound = oracle.tv_bound(P0.reshape(-1), n)  # exact: below, but for a 5-SD tail
    config = _config(process, parameterization, kappa=1.0)
    proc = dd.processes.from_config(config.process)
    # Seed 17 as in test_sampling_ancestral.py: kappa = 1 draws what ancestral draws, and seed 0
    # landed at 1.53x the floor, above the former fixed 1.5x threshold (see there).
    result = dd.generate(jax.random.key(17), oracle.exact_model_fn(P0, proc, parameterization),
                         config, n, 2)
    tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), 3), P0.reshape(-1))
    assert tv < bound and result.nfe == 100


@pytest.mark.parametrize("schedule", psi.SCHEDULES)
def test_every_kappa_schedule_runs_and_is_in_range(schedule):
    proc = dd.processes.masked(3)
    settings = {**dd.sampling.SAMPLER_DEFAULTS, **psi.DEFAULTS, "num_steps": 20,
                "kappa_schedule": schedule}
    t, s, kappa = psi.schedule(proc, settings)
    assert t.shape == s.shape == kappa.shape == (20,)
    kappa_min = psi.kappa_from_sigma(proc, t, s, psi.sigma_max(proc, t, s))  # ReMDM's largest sigma
    assert np.all(np.asarray(kappa) >= np.asarray(kappa_min) - 1e-6) and float(kappa.max()) <= 1
    assert np.all(np.asarray(s) <= np.asarray(t)) and float(s[-1]) == 0.0
    config = _config("masked", "denoiser", num_steps=20, kappa_schedule=schedule)
    tokens = dd.sample(jax.random.key(1), oracle.exact_model_fn(P0, proc, "denoiser"), config, 8, 2)
    assert tokens.min() >= 0 and tokens.max() < 3  # nothing left masked


def test_bad_kappa_schedule_names_the_field():
    config = _config("masked", "denoiser", kappa_schedule="cosine")
    with pytest.raises(ValueError, match="config.sampler.kappa_schedule"):
        dd.sample(jax.random.key(0), oracle.exact_model_fn(P0, dd.processes.masked(3)), config, 2, 2)




def test_remdm_conf_remasks_low_confidence_tokens_first():
    """sigma^i = softmax_i(-psi) sigma_max over unmasked positions; masked positions: kappa = 1."""
    proc = dd.processes.masked(3)
    x_t = jnp.array([[0, 1, 3, 2]])  # position 2 is masked
    confidence = jnp.array([[0.9, 0.2, 0.0, 0.5]])
    t, s = jnp.array([0.5]), jnp.array([0.4])
    kappa = np.asarray(psi.conf_kappa(proc, x_t, confidence, t, s))[0]
    sigma = (1 - kappa) * (1 - float(proc.alpha(0.4)))
    weights = np.exp(-np.array([0.9, 0.2, 0.5]))
    expect = weights / weights.sum() * float(psi.sigma_max(proc, t, s)[0])
    np.testing.assert_allclose(sigma[[0, 1, 3]], expect, atol=1e-6)
    assert kappa[2] == 1.0 and sigma[1] > sigma[3] > sigma[0]


def _remdm_loop_alpha(u, t_on=0.55, t_off=0.05, alpha_on=0.9):
    """ReMDM's alpha at grid fraction u (remdm/diffusion.py 'remdm-loop'), the defining formula."""
    if u >= t_on:
        return alpha_on * (1 - u) / (1 - t_on)
    if u <= t_off:
        return 1 - u * (1 - alpha_on) / t_off
    return alpha_on


@pytest.mark.parametrize("schedule_name", ["linear", "cosine", "loglinear"])
def test_remdm_loop_holds_alpha_on_between_t_on_and_t_off(schedule_name):
    """Defaults (ReMDM): hold at alpha_on = 0.9 for the grid fractions u in [t_off, t_on] = [0.05, 0.55],
    with sigma = eta; alpha linear in u from 0 before and up to 1 after. (The hold used to be
    at t = 0.55, i.e. alpha = 0.45 with the linear schedule, for 60% of the steps.)"""
    n = 100
    proc = dd.processes.masked(3, dd.schedules.get(schedule_name))
    settings = {**dd.sampling.SAMPLER_DEFAULTS, **psi.DEFAULTS, "num_steps": n,
                "kappa_schedule": "remdm_loop"}
    assert (settings["alpha_on"], settings["t_on"], settings["t_off"]) == (0.9, 0.55, 0.05)
    t, s, kappa = (np.asarray(a) for a in psi.schedule(proc, settings))
    u = 1 - np.arange(n + 1) / n
    expected = np.array([_remdm_loop_alpha(v) for v in u])
    alpha_grid = np.concatenate([np.asarray(proc.alpha(t)), np.asarray(proc.alpha(s[-1:]))])
    floor = float(proc.alpha(1.0))  # 'loglinear' never reaches alpha = 0
    np.testing.assert_allclose(alpha_grid, np.maximum(expected, floor), atol=2e-5)
    assert t[0] == 1.0 and s[-1] == 0.0 and np.all(s <= t)
    hold = (np.arange(n) >= 45) & (np.arange(n) < 95)  # steps with u_j, u_{j+1} in [0.05, 0.55]
    np.testing.assert_array_equal(t[hold], s[hold])
    np.testing.assert_allclose(np.asarray(proc.alpha(t[hold])), 0.9, atol=2e-6)
    np.testing.assert_allclose(kappa[hold], 1 - 0.02 / (1 - 0.9), atol=1e-5)  # sigma = eta
    assert np.all(kappa[~hold] == 1.0)


def test_remdm_loop_fields_move_the_phases():
    proc = dd.processes.masked(3)
    settings = {**dd.sampling.SAMPLER_DEFAULTS, **psi.DEFAULTS, "num_steps": 20,
                "kappa_schedule": "remdm_loop", "t_on": 0.5, "t_off": 0.2, "alpha_on": 0.8, "eta": 0.1}
    t, s, kappa = (np.asarray(a) for a in psi.schedule(proc, settings))
    held = np.flatnonzero(t == s)
    np.testing.assert_array_equal(held, np.arange(10, 16))
    np.testing.assert_allclose(1 - t[held], 0.8, atol=1e-6)
    np.testing.assert_allclose(kappa[held], 1 - 0.1 / 0.2, atol=1e-6)
    for field, value in [("t_off", 0.7), ("alpha_on", 1.0)]:
        with pytest.raises(ValueError, match=f"config.sampler.{field}"):
            psi.schedule(proc, {**settings, field: value})
