"""Guidance on an exact class-conditional toy: a joint law p(y, x) over labels y in {0, 1} and K^L
sequences, exact conditional models p(x_0^i | x_t, y) from the oracle (null label: p(x)), and
the exact noisy classifier p(y | x_t) by enumeration."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.sampling import guidance
from discrete_diffusion.testing import oracle

K, L, N = 3, 2, 20_000
P_Y = np.array([0.4, 0.6])
P_X_GIVEN_Y = np.stack([oracle.toy_law(K, L, seed=3), oracle.toy_law(K, L, seed=4)])  # [2, K, K]
P_X = np.tensordot(P_Y, P_X_GIVEN_Y, axes=1)
LABEL, NULL = 0, 2
FLOOR = oracle.expected_tv_floor(P_X_GIVEN_Y[LABEL].reshape(-1), N)


def _config(process, name="ancestral", steps=100, parameterization="denoiser", **sampler):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": K},
        "model": {"parameterization": parameterization, "num_labels": 2},
        "sampler": {"name": name, "num_steps": steps, **sampler},
    })


def _conditional_model(proc, parameterization="denoiser"):
    """model_fn(x_t, t, label): the exact p(x_0^i | x_t, y) (label 2 = null: p(x_0^i | x_t)).

    `oracle.exact_model_fn` applied to p(x | y) for each y and to p(x) for the null label; the
    oracle's enumeration is written out once for all labels (the per-label prior is selected inside);
    `test_toy_conditional_model_is_the_oracle_per_label` checks it against the oracle.
    """
    laws = np.stack([*P_X_GIVEN_Y, P_X])  # [3, K, K]
    log_laws = jnp.log(jnp.asarray(laws.reshape(3, -1), jnp.float32))  # [3, A]
    x0s = jnp.array(list(itertools.product(range(K), repeat=L)), jnp.int32)

    def model_fn(x_t, t, label):
        q = proc.marginal_probs(x0s[None], t[:, None])  # [N, A, L, V]
        idx = jnp.broadcast_to(x_t[:, None, :, None], q.shape[:-1] + (1,))
        log_lik = jnp.log(jnp.maximum(jnp.take_along_axis(q, idx, axis=-1)[..., 0], 1e-30))  # [N, A, L]
        log_prior = log_laws[label][:, :, None]  # [N, A, 1]
        onehot = jax.nn.one_hot(x0s, K)
        if parameterization == "denoiser":
            w = jax.nn.softmax(log_prior[..., 0] + log_lik.sum(-1), axis=-1)
            return jnp.log(jnp.einsum("na,alk->nlk", w, onehot) + 1e-30)
        w = jax.nn.softmax(log_prior + log_lik.sum(-1, keepdims=True) - log_lik, axis=1)
        return jnp.log(jnp.einsum("nal,alk->nlk", w, onehot) + 1e-30)

    return model_fn


@pytest.mark.parametrize("process,parameterization", [("masked", "denoiser"), ("uniform", "loo")])
def test_toy_conditional_model_is_the_oracle_per_label(process, parameterization):
    proc = dd.processes.from_config(_config(process).process)
    x_t = jax.random.randint(jax.random.key(0), (32, L), 0, proc.num_states)
    t = jax.random.uniform(jax.random.key(1), (32,))
    model = _conditional_model(proc, parameterization)
    for label, law in enumerate([*P_X_GIVEN_Y, P_X]):
        expected = oracle.exact_model_fn(law, proc, parameterization)(x_t, t)
        got = model(x_t, t, jnp.full((32,), label))
        np.testing.assert_allclose(jnp.exp(got), jnp.exp(expected), atol=1e-5)


def _exact_classifier(proc):
    """log p(y | x_t, t) by enumeration; x_onehot float [B, L, V] (differentiable), t [B]."""
    x0s = jnp.array(list(itertools.product(range(K), repeat=L)), jnp.int32)  # [A, L]
    log_joint = jnp.log(jnp.asarray(P_Y[:, None] * P_X_GIVEN_Y.reshape(2, -1), jnp.float32))  # [2, A]

    def classifier_fn(x_onehot, t):
        q = proc.marginal_probs(x0s[None], t[:, None])  # [B, A, L, V]
        lik = jnp.einsum("blv,balv->bal", x_onehot, q)
        log_lik = jnp.log(lik + 1e-30).sum(-1)  # [B, A]
        log_py_x = jax.nn.logsumexp(log_joint[None] + log_lik[:, None], axis=-1)  # [B, 2]
        return jax.nn.log_softmax(log_py_x, axis=-1)

    return classifier_fn


def _law(result):
    tokens = np.asarray(result.tokens)
    assert tokens.min() >= 0 and tokens.max() < K
    return oracle.empirical_law(tokens, K)


def _tilted(w):
    law = P_X_GIVEN_Y[LABEL].reshape(-1) ** w * P_X.reshape(-1) ** (1 - w)
    return law / law.sum()


@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_cfg_at_weight_one_samples_the_conditional_law(process):
    config = _config(process)
    proc = dd.processes.from_config(config.process)
    result = guidance.guided_generate(jax.random.key(0), _conditional_model(proc), config, N, L,
                                      label=LABEL, weight=1.0)
    tv = oracle.total_variation(_law(result), P_X_GIVEN_Y[LABEL].reshape(-1))
    print(f"\n{process}: CFG w=1 TV to p(x|y) {tv:.4f}, floor {FLOOR:.4f}")
    assert tv < 1.5 * FLOOR and result.nfe == 100


@pytest.mark.parametrize("w", [2.0, 0.5])
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_cfg_moves_towards_the_tilted_law(process, w):
    """The guided law is only approximately p(x|y)^w p(x)^(1-w): print the TVs, assert direction."""
    n = 10_000
    proc = dd.processes.from_config(_config(process).process)
    target = P_X_GIVEN_Y[LABEL].reshape(-1)
    config = _config(process, guidance="cfg", guidance_weight=w)
    law = _law(guidance.guided_generate(jax.random.key(1), _conditional_model(proc), config, n, L,
                                        label=LABEL))
    tv_tilted, tv_target = oracle.total_variation(law, _tilted(w)), oracle.total_variation(law, target)
    print(f"\n{process}: CFG w={w}: TV to tilted law {tv_tilted:.4f}, TV to p(x|y) {tv_target:.4f}, "
          f"TV(tilted, p(x|y)) {oracle.total_variation(_tilted(w), target):.4f}, "
          f"floor {oracle.expected_tv_floor(_tilted(w), n):.4f}")
    if w == 2.0:
        assert tv_tilted < tv_target


@pytest.mark.parametrize("mode", ["exact", "taylor"])
def test_classifier_guidance_samples_the_conditional_law(mode):
    n = 10_000
    config = _config("masked", guidance="classifier", guidance_weight=1.0, classifier_mode=mode)
    proc = dd.processes.from_config(config.process)
    target = P_X_GIVEN_Y[LABEL].reshape(-1)
    result = guidance.guided_generate(jax.random.key(2), _conditional_model(proc), config, n, L,
                                      label=LABEL, classifier_fn=_exact_classifier(proc))
    tv = oracle.total_variation(_law(result), target)
    # Unguided, the exact unconditional model samples p(x) (to its own noise floor).
    tv_unguided = oracle.total_variation(P_X.reshape(-1), target)
    print(f"\nclassifier guidance ({mode}) w=1: TV to p(x|y) {tv:.4f} (unguided {tv_unguided:.4f}, "
          f"floor {oracle.expected_tv_floor(target, n):.4f})")
    assert tv < (0.2 if mode == "exact" else 0.6) * tv_unguided  # Taylor: first order only


def test_cfg_mix_endpoints_and_impossible_states():
    cond = jnp.log(jnp.array([0.5, 0.5, 0.0]) + 1e-45)
    uncond = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(jnp.exp(guidance.cfg_mix(cond, uncond, 1.0)), [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(jnp.exp(guidance.cfg_mix(uncond, cond, 0.0)), [0.5, 0.5, 0.0], atol=1e-6)
    impossible = jnp.array([0.0, 0.0, dd.processes.NEG_INF])
    for w in (-1.0, 0.5, 3.0):
        assert float(jnp.exp(guidance.cfg_mix(impossible, uncond, w))[2]) == 0.0


@pytest.mark.parametrize("field,value", [("guidance", "cfgg"), ("guidance_weight", float("nan")),
                                         ("guidance_weight", "2"), ("classifier_mode", "hessian")])
def test_bad_guidance_fields_name_the_field(field, value):
    config = _config("masked", **{field: value})
    proc = dd.processes.from_config(config.process)
    with pytest.raises(ValueError, match=f"config.sampler.{field}"):
        guidance.guided_generate(jax.random.key(0), _conditional_model(proc), config, 4, L, label=0)


def test_label_for_an_unconditional_model_errors():
    config = _config("masked")
    config.model.num_labels = 0
    model = oracle.exact_model_fn(P_X, dd.processes.from_config(config.process))
    with pytest.raises(ValueError, match="config.model.num_labels"):
        guidance.guided_generate(jax.random.key(0), model, config, 4, L, label=1, weight=2.0)
    with pytest.raises(ValueError, match="out of range"):
        guidance.guided_generate(jax.random.key(0), _conditional_model(dd.processes.masked(K)),
                                 _config("masked"), 4, L, label=2)
    with pytest.raises(ValueError, match="needs classifier_fn"):
        guidance.guided_generate(jax.random.key(0), model, _config("masked", guidance="classifier"), 4, L,
                                 label=0)


@pytest.mark.parametrize("name", ["psi", "score_tweedie"])
def test_cfg_runs_with_other_samplers(name):
    config = _config("uniform", name=name, steps=20, parameterization="loo")
    proc = dd.processes.from_config(config.process)
    result = guidance.guided_generate(jax.random.key(3), _conditional_model(proc, "loo"), config, 64, L,
                                      label=jnp.zeros(64, jnp.int32), weight=1.5)
    assert result.tokens.shape == (64, L) and result.nfe == 20
