"""Informed predictor-corrector: exact single-site conditionals, Gibbs invariance, NFE budget;
temperature on the LOO posterior versus on the denoiser."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.sampling import informed_pc
from discrete_diffusion.testing import oracle

K, L = 3, 2
P0 = oracle.toy_law(K, L, seed=1)


def test_one_site_random_gibbs_sweep_leaves_p_t_invariant():
    proc = dd.processes.uniform(K)
    t = 0.45
    orc = oracle.Oracle(P0, "uniform", float(proc.alpha(t)))
    states = orc.xts
    rho = np.stack([orc.loo(x) for x in states])
    log_rho = jnp.log(jnp.asarray(rho, jnp.float32))
    tt = jnp.full((len(states),), t)
    cond = np.asarray(informed_pc.single_site_conditionals(proc, "loo", log_rho, jnp.asarray(states), tt))
    index = {tuple(x): b for b, x in enumerate(states)}
    T = np.zeros((len(states), len(states)))
    for a, x in enumerate(states):
        for i, y in itertools.product(range(L), range(K)):
            x2 = list(x)
            x2[i] = y
            T[a, index[tuple(x2)]] += cond[a, i, y] / L
    np.testing.assert_allclose(orc.pt @ T, orc.pt, atol=1e-6)
    # The conditionals are the exact ones of p_t:
    for a, x in enumerate(states):
        for i in range(L):
            ratios = orc.score(x)[i]
            np.testing.assert_allclose(cond[a, i], ratios / ratios.sum(), atol=1e-6)


def _config(**sampler):
    return ml_collections.ConfigDict({
        "process": {"name": "uniform", "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "loo"},
        "sampler": {"name": "informed_pc", "num_steps": 100, **sampler},
    })


def test_gibbs_corrected_sampler_reaches_the_noise_floor_and_counts_nfe():
    n = 20_000
    floor = oracle.expected_tv_floor(P0.reshape(-1), n)
    config = _config(corrector_steps=1, sites_per_sweep=1, site_rule="random")
    model = oracle.exact_model_fn(P0, dd.processes.uniform(K), "loo")
    result = dd.generate(jax.random.key(0), model, config, n, L)
    tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), K), P0.reshape(-1))
    assert tv < 1.5 * floor, (tv, floor)
    assert result.nfe == 100 + 99


@pytest.mark.parametrize("rule", informed_pc.SITE_RULES)
def test_site_rules_run(rule):
    config = _config(num_steps=8, corrector_steps=2, sites_per_sweep=1, site_rule=rule)
    model = oracle.exact_model_fn(P0, dd.processes.uniform(K), "loo")
    result = dd.generate(jax.random.key(1), model, config, 16, L)
    assert result.nfe == 8 + 2 * 7 and int(result.tokens.max()) < K


def test_steps_for_budget():
    for nfe, c in [(100, 2), (64, 1), (10, 0), (1, 3)]:
        n = informed_pc.steps_for_budget(nfe, c)
        assert n + c * (n - 1) <= max(nfe, 1) and (n + 1) + c * n > nfe


def test_bad_site_rule_names_the_field():
    model = oracle.exact_model_fn(P0, dd.processes.uniform(K), "loo")
    with pytest.raises(ValueError, match="config.sampler.site_rule"):
        dd.sample(jax.random.key(0), model, _config(site_rule="best"), 2, L)


def test_temperature_on_loo_versus_denoiser():
    """'loo' tempers rho, 'denoiser' tempers mu; they agree at T = 1 and differ otherwise."""
    proc = dd.processes.uniform(K)
    model = oracle.exact_model_fn(P0, proc, "loo")
    x_t = jnp.array([[0, 2], [1, 1]])
    t = jnp.array([0.5, 0.5])
    out = {}
    for on in ("loo", "denoiser"):
        for temp in (1.0, 0.5):
            config = _config(temperature=temp, temperature_on=on)
            ctx = dd.sampling.make_context(model, config, 2, L)
            logits = ctx.network(x_t, t)
            out[on, temp] = np.exp(dd.parameterizations.to_denoiser(proc, on, logits, x_t, t))
    np.testing.assert_allclose(out["loo", 1.0], out["denoiser", 1.0], atol=1e-6)
    assert np.abs(out["loo", 0.5] - out["denoiser", 0.5]).max() > 1e-2
    mu = np.exp(dd.parameterizations.loo_to_denoiser(proc, model(x_t, t), x_t, t))
    tempered = mu**2 / (mu**2).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["denoiser", 0.5], tempered, atol=1e-6)
