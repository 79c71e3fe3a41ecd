"""The absorbing-state reformulation of uniform diffusion: same marginals as uniform diffusion, a
tight NELBO at the exact model, exact AUDM and ReAUDM samplers."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion import losses
from discrete_diffusion.testing import oracle

K, L = 3, 2
P0 = oracle.toy_law(K, L, seed=1)


def test_marginal_equals_uniform_diffusion_and_noise_resampling_is_exact():
    proc = dd.processes.uniform_absorbing(4)
    n = 200_000
    x0 = jnp.full((n, 1), 1, jnp.int32)
    x_t, u = proc.sample_with_noise(jax.random.key(0), x0, jnp.full((n,), 0.6))
    freq = np.bincount(np.asarray(x_t[:, 0]), minlength=4) / n
    np.testing.assert_allclose(freq, oracle.kernel("uniform", 4, float(proc.alpha(0.6)))[1], atol=5e-3)
    assert np.all(np.asarray(x_t != x0) <= np.asarray(x_t == u))  # moved tokens sit on their noise id
    # p(u | x0, x_s = x0) from the construction vs resample_noise.
    a = float(proc.alpha(0.6))
    clean = np.asarray((x_t == x0)[:, 0])
    u_true = np.asarray(u[clean, 0])
    s_time = jnp.full((clean.sum(),), 0.6)
    u_new = np.asarray(proc.resample_noise(jax.random.key(1), x0[clean], x_t[clean], s_time))
    expect = np.full(4, (1 - 1 / (1 + 3 * a)) / 3)
    expect[1] = 1 / (1 + 3 * a)
    for draws in (u_true, u_new[:, 0]):
        np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), expect, atol=6e-3)


def test_audm_nelbo_is_tight_at_the_exact_model():
    proc = dd.processes.uniform_absorbing(K)
    model = oracle.exact_audm_model_fn(P0, proc)
    entropy = float(-(P0 * np.log(P0)).sum())
    x0s = np.array(list(itertools.product(range(K), repeat=L)))
    states = np.array(list(itertools.product(range(K), repeat=2 * L)))  # (x_t, u)
    nodes, weights = np.polynomial.legendre.leggauss(48)
    u01 = 0.5 * (nodes + 1)
    ts, ws = (1 - np.cos(np.pi * u01)) / 2, 0.5 * weights * (np.pi / 2) * np.sin(np.pi * u01)
    total = 0.0
    for t, w in zip(ts, ws, strict=True):
        a = float(proc.alpha(t))
        X0 = np.repeat(x0s, len(states), 0)
        XT, U = np.tile(states[:, :L], (len(x0s), 1)), np.tile(states[:, L:], (len(x0s), 1))
        # p(x_t, u | x0) per position: u uniform; x_t = x0 (not absorbed) or u (absorbed).
        per_pos = (1 / K) * (a * (XT == X0) + (1 - a) * (XT == U))
        joint = P0.reshape(-1).repeat(len(states)) * per_pos.prod(-1)
        tt = jnp.full((len(X0),), t)
        logits = model(jnp.asarray(XT), tt, noise=jnp.asarray(U))
        nelbo = losses.nelbo_per_token(proc, "denoiser", logits, jnp.asarray(X0), jnp.asarray(XT), tt,
                                       noise=jnp.asarray(U)).sum(-1)
        total += w * float((joint * np.where(joint > 0, np.asarray(nelbo, np.float64), 0)).sum())
    assert abs(total - entropy) < 2e-5, (total, entropy)


@pytest.mark.parametrize("sampler", ["audm", "reaudm"])
def test_audm_samplers_reach_the_noise_floor(sampler):
    n = 20_000
    config = ml_collections.ConfigDict({
        "process": {"name": "uniform_absorbing", "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser"},
        "sampler": {"name": sampler, "num_steps": 100},
    })
    model = oracle.exact_audm_model_fn(P0, dd.processes.from_config(config.process))
    result = dd.generate(jax.random.key(0), model, config, n, L)
    floor = oracle.expected_tv_floor(P0.reshape(-1), n)
    bound = oracle.tv_bound(P0.reshape(-1), n)  # exact: below, but for a 5-SD tail
    tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), K), P0.reshape(-1))
    assert tv < bound, (tv, bound, floor)
    assert result.nfe == 100


def test_misuse_errors():
    proc = dd.processes.uniform_absorbing(K)
    z = jnp.zeros((1, L), jnp.int32)
    with pytest.raises(ValueError, match="config.model.parameterization"):
        losses.loss_per_token(proc, "loo", "elbo", jnp.zeros((1, L, K)), z, z, jnp.ones(1), noise=z)
    with pytest.raises(ValueError, match="noise ids"):
        losses.loss_per_token(proc, "denoiser", "elbo", jnp.zeros((1, L, K)), z, z, jnp.ones(1))
    config = ml_collections.ConfigDict({"process": {"name": "uniform", "num_classes": K},
                                        "sampler": {"name": "audm"}})
    with pytest.raises(ValueError, match="uniform_absorbing"):
        dd.sample(jax.random.key(0), lambda x, t, **kw: jnp.zeros(x.shape + (K,)), config, 2, L)
