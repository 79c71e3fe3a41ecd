"""Every conversion matches the enumeration oracle (to 1e-6) for both processes."""

import jax.numpy as jnp
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion import parameterizations as conv
from discrete_diffusion.testing import oracle

CASES = [(name, K, L, t) for name in ("masked", "uniform") for (K, L) in ((3, 2), (2, 3))
         for t in (0.15, 0.5, 0.9)]


def _setup(name, K, L, t, seed=0):
    p0 = oracle.toy_law(K, L, seed=seed)
    proc = getattr(dd.processes, name)(K)
    orc = oracle.Oracle(p0, name, float(proc.alpha(t)))
    xs = orc.support()
    x_t = jnp.asarray(xs, jnp.int32)
    tt = jnp.full((len(xs),), t)
    mu = np.stack([orc.denoiser(x) for x in xs])
    rho = np.stack([orc.loo(x) for x in xs])
    score = np.stack([orc.score(x) for x in xs])
    noisy = np.asarray(proc.is_noisy(x_t))
    return proc, x_t, tt, mu, rho, score, noisy


def _log(a):
    return jnp.log(jnp.maximum(jnp.asarray(a, jnp.float32), 1e-30))


@pytest.mark.parametrize("name,K,L,t", CASES)
def test_denoiser_loo_roundtrip_matches_oracle(name, K, L, t):
    proc, x_t, tt, mu, rho, _, noisy = _setup(name, K, L, t)
    got_rho = np.exp(conv.denoiser_to_loo(proc, _log(mu), x_t, tt))
    np.testing.assert_allclose(got_rho[noisy], rho[noisy], atol=1e-6)
    got_mu = np.exp(conv.loo_to_denoiser(proc, _log(rho), x_t, tt))
    np.testing.assert_allclose(got_mu, mu, atol=1e-6)  # everywhere, carry-over included


@pytest.mark.parametrize("name,K,L,t", CASES)
def test_score_conversions_match_oracle(name, K, L, t):
    proc, x_t, tt, mu, rho, score, noisy = _setup(name, K, L, t)
    got = np.exp(conv.loo_to_score(proc, _log(rho), x_t, tt))
    np.testing.assert_allclose(got, score, rtol=1e-5, atol=1e-6)  # all positions given the LOO
    got_d = np.exp(conv.denoiser_to_score(proc, _log(mu), x_t, tt))
    np.testing.assert_allclose(got_d[noisy], score[noisy], rtol=1e-5, atol=1e-6)
    back = np.exp(conv.score_to_loo(proc, _log(score), x_t, tt))
    np.testing.assert_allclose(back, rho, atol=1e-6)
    back_mu = np.exp(conv.score_to_denoiser(proc, _log(score), x_t, tt))
    np.testing.assert_allclose(back_mu, mu, atol=1e-6)


def test_masked_loo_equals_denoiser_at_masked_positions():
    proc, x_t, tt, mu, rho, _, noisy = _setup("masked", 3, 2, 0.5)
    np.testing.assert_allclose(mu[noisy], rho[noisy], atol=1e-12)


def test_undefined_loo_passes_input_through():
    proc = dd.processes.masked(4)
    logits = jnp.array([[[0.3, -1.0, 2.0, 0.5]]])
    x_t = jnp.array([[2]])  # unmasked: the denoiser is onehot(2), the LOO is not identifiable
    out = conv.denoiser_to_loo(proc, logits, x_t, jnp.array([0.5]))
    np.testing.assert_allclose(out, np.asarray(logits) - np.log(np.exp(logits).sum()), atol=1e-6)


@pytest.mark.parametrize("name", ["masked", "uniform"])
def test_score_network_output_completion(name):
    """A score network's K log-ratios, completed to V, convert back to the exact LOO/denoiser."""
    proc, x_t, tt, mu, rho, score, noisy = _setup(name, 3, 2, 0.4)
    # At positions whose self-ratio is a clean class, an offset of the network output must not
    # matter (the self-ratio is forced to 1); at masked positions the outputs are absolute.
    raw = _log(score[..., :3]) + jnp.where(jnp.asarray(noisy) & (name == "masked"), 0.0, 0.7)[..., None]
    full = np.exp(conv.model_score_to_ratios(proc, raw, x_t, tt))
    np.testing.assert_allclose(full, score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(conv.convert(proc, "score", "denoiser", raw, x_t, tt)), mu, atol=1e-6)


def test_unknown_parameterization_names_field():
    proc = dd.processes.uniform(3)
    with pytest.raises(ValueError, match="config.model.parameterization"):
        conv.convert(proc, "eps", "loo", jnp.zeros((1, 2, 3)), jnp.zeros((1, 2), jnp.int32), jnp.ones(1))


@pytest.mark.parametrize("case", [c for c in CASES if c[3] == 0.5])
def test_convert_from_every_parameterization_to_every_representation(case):
    """`convert(proc, src, dst, ...)` from the exact output of each parameterization gives the
    exact target representation (the oracle's), wherever the target is defined."""
    proc, x_t, tt, mu, rho, score, noisy = _setup(*case)
    K = proc.num_classes
    model_score = _log(score)[..., :K]  # a score network's K outputs (log s(y) for clean y)
    exact = {"denoiser": _log(mu), "loo": _log(rho), "score": model_score}
    for src, logits in exact.items():
        got_mu = conv.convert(proc, src, "denoiser", logits, x_t, tt)
        np.testing.assert_allclose(np.exp(got_mu), mu, atol=1e-5)
        got_rho = np.exp(np.asarray(conv.convert(proc, src, "loo", logits, x_t, tt)))
        keep = noisy[..., None] if src == "denoiser" else np.ones_like(noisy)[..., None]
        np.testing.assert_allclose(np.where(keep, got_rho, rho), rho, atol=1e-5)
        got_s = np.exp(np.asarray(conv.convert(proc, src, "score", logits, x_t, tt)))
        np.testing.assert_allclose(np.where(keep, got_s, score), score, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="config.model.parameterization='eps'"):
        conv.convert(proc, "eps", "loo", exact["loo"], x_t, tt)
    with pytest.raises(ValueError, match="'logits' asked for is not one of"):
        conv.convert(proc, "loo", "logits", exact["loo"], x_t, tt)
