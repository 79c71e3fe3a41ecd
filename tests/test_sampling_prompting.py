"""Prompting / infilling: every sampler keeps the given tokens and samples the exact conditional."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.testing import oracle

K, L = 3, 3
P0 = oracle.toy_law(K, L, seed=5)
GIVEN = 1  # position 1 is fixed to token 2: sample p(x_0, x_2 | x_1 = 2)


@pytest.mark.parametrize("process,sampler,parameterization", [
    ("masked", "ancestral", "denoiser"),
    ("masked", "first_hitting", "denoiser"),
    ("masked", "psi", "denoiser"),
    ("uniform", "ancestral", "loo"),
    ("uniform", "psi", "denoiser"),
])
def test_prompted_sampling_is_the_exact_conditional(process, sampler, parameterization):
    n = 20_000
    config = ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": K},
        "model": {"parameterization": parameterization},
        "sampler": {"name": sampler, "num_steps": 100},
    })
    proc = dd.processes.from_config(config.process)
    model = oracle.exact_model_fn(P0, proc, parameterization)
    prompt_mask = jnp.zeros((L,), bool).at[GIVEN].set(True)
    prompt_tokens = jnp.zeros((L,), jnp.int32).at[GIVEN].set(2)
    tokens = np.asarray(dd.sample(jax.random.key(0), model, config, n, L,
                                  prompt_tokens=prompt_tokens, prompt_mask=prompt_mask))
    assert np.all(tokens[:, GIVEN] == 2)
    cond = P0[:, 2, :] / P0[:, 2, :].sum()
    free = np.stack([tokens[:, 0], tokens[:, 2]], 1)
    floor = oracle.expected_tv_floor(cond.reshape(-1), n)
    tv = oracle.total_variation(oracle.empirical_law(free, K), cond.reshape(-1))
    assert tv < 1.5 * floor, (tv, floor)
