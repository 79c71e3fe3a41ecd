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
    bound = oracle.tv_bound(cond.reshape(-1), n)  # exact: below, but for a 5-SD tail
    tv = oracle.total_variation(oracle.empirical_law(free, K), cond.reshape(-1))
    assert tv < bound, (tv, bound, floor)


# ---- input checks: model_fn output, prompt tokens and masks --------------------------

def _config(process="masked", sampler="ancestral", k=5):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": k},
        "model": {"parameterization": "denoiser"},
        "sampler": {"name": sampler, "num_steps": 4},
    })


def _model(k, dtype=jnp.float32):
    def model_fn(x_t, t, **inputs):
        return jnp.zeros((*x_t.shape, k), dtype)
    return model_fn


@pytest.mark.parametrize("process,sampler", [
    ("masked", "ancestral"), ("masked", "psi"), ("masked", "first_hitting"),
    ("uniform", "informed_pc"), ("uniform", "score_euler"), ("uniform_absorbing", "audm"),
])
def test_model_fn_with_the_wrong_number_of_classes_names_k_and_the_field(process, sampler):
    with pytest.raises(ValueError, match=r"\[2, 4, 8\].*K = 5 .*config\.process\.num_classes"):
        dd.sample(jax.random.key(0), _model(8), _config(process, sampler), 2, 4)


def test_model_fn_with_integer_logits_is_refused():
    with pytest.raises(TypeError, match="model_fn returned logits of dtype int32"):
        dd.sample(jax.random.key(0), _model(5, jnp.int32), _config(), 2, 4)


def test_model_fn_check_leaves_no_callback_in_the_jitted_sampler():
    from discrete_diffusion import sampling

    ctx = sampling.make_context(_model(5), _config(), 2, 4)
    jaxpr = str(jax.make_jaxpr(lambda k: sampling.SAMPLERS["ancestral"].run(k, ctx))(
        jax.random.key(0)))
    assert "callback" not in jaxpr


@pytest.mark.parametrize("tokens,mask,error,match", [
    ([0, 99, 1], [False, True, False], ValueError, r"prompt_tokens.*\[0, 5\).*num_classes.*99"),
    ([0, -1, 1], [False, True, False], ValueError, "found -1"),
    ([0, 5, 1], [False, True, False], ValueError, "found 5"),  # the mask id is no clean token
    (np.zeros(3, np.float32), [False, True, False], TypeError, "integer token ids"),
    ([0, 1, 2], [0.0, 1.0, 0.0], TypeError, "prompt_mask must be bool"),
    ([0, 1, 2], [0, 2, 0], ValueError, "only 0 and 1"),
    ([0, 1], [False, True], ValueError, r"prompt_tokens has shape \[2\]; expected \[N, L\] = \[2, 4\]"),
    (np.zeros((3, 4), np.int32), np.ones((3, 4), bool), ValueError, r"shape \[3, 4\]"),
])
def test_bad_prompts_are_refused(tokens, mask, error, match):
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    if tokens.ndim == 1 and tokens.shape[0] == 3:  # pad the fixtures to L = 4
        tokens, mask = np.append(tokens, tokens[:1]), np.append(mask, mask[:1] * 0)
    with pytest.raises(error, match=match):
        dd.sample(jax.random.key(0), _model(5), _config(), 2, 4,
                  prompt_tokens=tokens, prompt_mask=mask)


def test_out_of_range_tokens_outside_the_prompt_are_ignored():
    tokens = np.array([99, 2, 99, 99])
    mask = np.array([False, True, False, False])
    out = dd.sample(jax.random.key(0), _model(5), _config(), 2, 4,
                    prompt_tokens=tokens, prompt_mask=mask)
    assert np.all(np.asarray(out)[:, 1] == 2) and np.asarray(out).max() < 5
