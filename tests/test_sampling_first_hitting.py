"""First-hitting sampler: exact with the exact model, L network calls, exact event-time law."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

import discrete_diffusion as dd
from discrete_diffusion.sampling import first_hitting
from discrete_diffusion.testing import oracle

P0 = oracle.toy_law(3, 2, seed=1)


def _config(**sampler):
    return ml_collections.ConfigDict({
        "process": {"name": "masked", "schedule": "cosine", "num_classes": 3},
        "model": {"parameterization": "denoiser", "time_conditioning": False},
        "sampler": {"name": "first_hitting", **sampler},
    })


def test_first_hitting_reaches_the_noise_floor_with_one_call_per_token():
    n = 20_000
    floor = oracle.expected_tv_floor(P0.reshape(-1), n)
    bound = oracle.tv_bound(P0.reshape(-1), n)  # exact: below, but for a 5-SD tail
    config = _config()
    model = oracle.exact_model_fn(P0, dd.processes.from_config(config.process), "denoiser")
    result = dd.generate(jax.random.key(0), model, config, n, 2)
    tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), 3), P0.reshape(-1))
    assert tv < bound, (tv, bound, floor)
    assert result.nfe == 2


@pytest.mark.parametrize("schedule", ["linear", "cosine", "poly"])
def test_hitting_times_follow_their_exact_law(schedule):
    """P(tau <= s | n masked at t) = ((1 - alpha_s) / (1 - alpha_t))^n."""
    proc = dd.processes.masked(3, dd.schedules.get(schedule))
    n, t = 5, 0.8
    tau = first_hitting.next_hitting_time(jax.random.key(1), proc, jnp.full((50_000,), t),
                                          jnp.full((50_000,), n))
    a_t = float(proc.alpha(t))

    def cdf(s):
        return ((1 - np.asarray(proc.alpha(jnp.asarray(s)))) / (1 - a_t)) ** n

    assert stats.kstest(np.asarray(tau), cdf).pvalue > 1e-6
    assert float(tau.max()) <= t


def test_parallel_variant_uses_ceil_length_over_k_calls():
    config = _config(tokens_per_step=3)
    model = oracle.exact_model_fn(P0, dd.processes.masked(3), "denoiser")
    result = dd.generate(jax.random.key(2), lambda x, t: jnp.zeros(x.shape + (3,)), config, 4, 7)
    assert result.nfe == 3 and int(result.tokens.max()) < 3
    result = dd.generate(jax.random.key(2), model, _config(tokens_per_step=2), 4, 2)
    assert result.nfe == 1


def test_first_hitting_rejects_uniform_process():
    config = _config()
    config.process.name = "uniform"
    with pytest.raises(ValueError, match="config.process.name='masked'"):
        dd.sample(jax.random.key(0), lambda x, t: jnp.zeros(x.shape + (3,)), config, 2, 2)
