"""Likelihood evaluation: stratified times, the multi-t NELBO is tight at the exact denoiser (it
estimates H(p_data)), its standard errors behave, and the AR NLL has the model's alignment."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion import losses
from discrete_diffusion.data.synthetic import MarkovChain
from discrete_diffusion.evaluation import likelihood
from discrete_diffusion.models.transformer import ar_inputs
from discrete_diffusion.testing import oracle

K, L = 3, 2
T_MIN = 1e-4


@functools.cache  # one function object per (law, process): jit compiles it once
def _exact_nelbo_fn(law_seed, name):
    """nelbo_fn(key, x0, t) of the exact network of the toy law `law_seed` under process `name`."""
    p0 = oracle.toy_law(K, L, seed=law_seed)
    proc = getattr(dd.processes, name)(K)
    if name == "uniform_absorbing":
        model = oracle.exact_audm_model_fn(p0, proc)

        def fn(key, x0, t):
            x_t, u = proc.sample_with_noise(key, x0, t[:, None])
            return losses.nelbo_per_token(
                proc, "denoiser", model(x_t, t, u), x0, x_t, t[:, None], noise=u
            )
        return fn
    model = oracle.exact_model_fn(p0, proc, "denoiser")

    def fn(key, x0, t):
        x_t = proc.sample_marginal(key, x0, t[:, None])
        return losses.nelbo_per_token(proc, "denoiser", model(x_t, t), x0, x_t, t[:, None])
    return fn


def _draw(p0, n, seed):
    """n iid sequences `[n, L]` from the toy law (itertools.product order = C order)."""
    seqs = np.array(list(itertools.product(range(K), repeat=L)), np.int32)
    idx = np.random.default_rng(seed).choice(len(seqs), size=n, p=p0.reshape(-1))
    return jnp.asarray(seqs[idx])


_nelbo_samples = jax.jit(likelihood.nelbo_samples, static_argnames=("nelbo_fn", "num_t", "t_min"))


def _estimate(nelbo_fn, x0, num_t, seed):
    s = _nelbo_samples(jax.random.key(seed), nelbo_fn=nelbo_fn, x0=x0, num_t=num_t, t_min=T_MIN)
    return likelihood.summarize_nelbo(s, np.full(x0.shape[0], x0.shape[1]))


def test_low_discrepancy_times_stratify_each_row():
    t = np.asarray(likelihood.low_discrepancy_times(jax.random.key(0), 5, 8, 0.2), np.float64)
    assert t.shape == (5, 8)
    assert t.min() >= 0.2 and t.max() < 1.0
    gaps = np.diff(np.sort(t, axis=1), axis=1)
    np.testing.assert_allclose(gaps, 0.8 / 8, atol=1e-6)  # one time in each stratum
    assert np.unique(np.round(t[:, 0], 6)).size == 5  # independent shifts per sequence


def test_nelbo_samples_sum_weighted_tokens_and_use_fresh_keys():
    x0 = jnp.zeros((3, 4), jnp.int32)
    w = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    key = jax.random.key(1)
    s = likelihood.nelbo_samples(key, lambda k, x, t: jnp.broadcast_to(t[:, None], x.shape), x0,
                                 6, 0.1, weights=w)
    t = likelihood.low_discrepancy_times(jax.random.split(key)[0], 3, 6, 0.1)
    np.testing.assert_allclose(s, np.array([4.0, 2.0, 0.0])[:, None] * np.asarray(t), rtol=1e-6)
    noise = likelihood.nelbo_samples(key, lambda k, x, t: jax.random.uniform(k, x.shape), x0, 6, 0.1)
    assert np.unique(np.round(np.asarray(noise), 6)).size == noise.size  # a new key per time


def _entropy(law_seed):
    p0 = oracle.toy_law(K, L, seed=law_seed)
    return p0, float(-(p0 * np.log(p0)).sum())


@pytest.mark.parametrize("name", ["masked", "uniform", "uniform_absorbing"])
def test_multi_t_nelbo_of_the_exact_model_estimates_the_data_entropy(name):
    """E_data NELBO = H(p_data) for the exact denoiser (tight bound; cf. the quadrature proof in
    test_losses): the estimate lands within 3 SE of H / L. On data from another law q the same model
    pays H(q) + KL(q || p) >= H(q) and lands far above H(q) / L."""
    p0, entropy = _entropy(1)
    est = _estimate(_exact_nelbo_fn(1, name), _draw(p0, 4096, seed=0), num_t=4, seed=0)
    assert est["num_sequences"] == 4096 and est["num_t"] == 4 and est["num_tokens"] == 4096 * L
    z = (est["nelbo"] - entropy / L) / est["se"]
    assert abs(z) < 3.0, (est, entropy / L)
    assert est["se"] < 0.06  # not a vacuous test: H / L is ~0.88 nats
    q0, q_entropy = _entropy(7)
    wrong = _estimate(_exact_nelbo_fn(1, name), _draw(q0, 4096, seed=0), num_t=4, seed=0)
    assert (wrong["nelbo"] - q_entropy / L) / wrong["se"] > 5.0, (wrong, q_entropy / L)


def test_monte_carlo_se_shrinks_like_one_over_sqrt_num_t():
    p0, _ = _entropy(1)
    fn = _exact_nelbo_fn(1, "masked")
    x0 = _draw(p0, 4096, seed=1)  # a fixed batch
    few = _estimate(fn, x0, num_t=4, seed=0)
    many = _estimate(fn, x0, num_t=64, seed=0)
    ratio = few["mc_se"] / many["mc_se"]
    assert 2.8 < ratio < 5.7, ratio  # sqrt(64 / 4) = 4
    # mc_se measures the actual spread of the estimate over independent (t, x_t) draws of this batch
    # (to a factor: the 1/t-weighted integrand is heavy-tailed).
    reps = [_estimate(fn, x0, num_t=4, seed=s) for s in range(1, 41)]
    spread = np.std([r["nelbo"] for r in reps], ddof=1)
    mean_mc_se = np.mean([r["mc_se"] for r in reps])
    assert 0.6 * mean_mc_se < spread < 1.6 * mean_mc_se, (spread, mean_mc_se)
    # the total SE keeps the data part: it does not vanish with num_t.
    assert many["se"] > 2 * many["mc_se"]


def test_summarize_nelbo_by_hand():
    s = np.array([[2.0, 4.0], [6.0, 6.0], [3.0, 3.0]])
    out = likelihood.summarize_nelbo(s, np.array([2, 4, 3]))
    # m = [3, 6, 3], R = 12 / 9, e = [1/3, 2/3, -1], sum e^2 = 14/9
    assert out["nelbo"] == pytest.approx(4 / 3)
    assert out["bpt"] == pytest.approx(4 / 3 / math.log(2))
    assert out["ppl"] == pytest.approx(math.exp(4 / 3))
    assert out["se"] == pytest.approx(math.sqrt(1.5 * 14 / 9) / 9)
    assert out["se_bpt"] == pytest.approx(out["se"] / math.log(2))
    assert out["mc_se"] == pytest.approx(1 / 9)  # row variances 2, 0, 0; sqrt(2 / 2) / 9
    assert (out["num_sequences"], out["num_t"], out["num_tokens"]) == (3, 2, 9.0)
    # equal lengths: the ratio SE is the plain SE of the per-token means
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, size=(50, 3))
    out = likelihood.summarize_nelbo(s, np.full(50, 7))
    assert out["se"] == pytest.approx(np.std(s.mean(1) / 7, ddof=1) / math.sqrt(50))
    with pytest.raises(ValueError, match="num_t"):
        likelihood.summarize_nelbo(s[0], np.full(50, 7))


def test_ar_log_likelihood_by_hand():
    logits = jnp.array([[[0.0, math.log(3.0)], [math.log(2.0), 0.0]]])  # p(1) = 3/4, then p(0) = 2/3
    x0 = jnp.array([[1, 0]])
    np.testing.assert_allclose(likelihood.ar_log_likelihood(logits, x0), [math.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(likelihood.ar_log_likelihood(logits, x0, jnp.array([[1, 0]])),
                               [-math.log(0.75)], rtol=1e-6)


def test_ar_log_likelihood_alignment_matches_ar_inputs():
    """The exact Markov chain as an AR model fed `ar_inputs` (BOS = K): logits[:, i] = log P(. |
    input i = x0[i - 1]), row BOS = log pi; its NLL is exactly -log p(x0)."""
    chain = MarkovChain.random(6, support=3, seed=2)
    with np.errstate(divide="ignore"):  # forbidden transitions: log 0 = -inf
        table = np.log(np.vstack([chain.transition, chain.initial[None]]))  # [K + 1, K]
    x0 = chain.sample(16, 9, seed=3)
    logits = jnp.asarray(table, jnp.float32)[ar_inputs(jnp.asarray(x0), bos_id=6)]  # [B, L, K]
    nll = likelihood.ar_log_likelihood(logits, jnp.asarray(x0))
    np.testing.assert_allclose(nll, -chain.exact_log_likelihood(x0), rtol=1e-5)
    shifted = likelihood.ar_log_likelihood(logits[:, 1:], jnp.asarray(x0[:, :-1]))  # wrong alignment
    assert not np.allclose(shifted, -chain.exact_log_likelihood(x0[:, :-1]), rtol=1e-3)
