"""dd.duality: the diffusion transformation T and the (top-k) relaxed samples of Duo / Duo II.

Exact answers: T against scipy.integrate.quad in float64 and the K = 2 closed form; the law of
z_t against the enumerated uniform marginal; the top-k path against the dense path on shared
noise; the order statistics against their exact CDFs and against dense sampling.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

import discrete_diffusion as dd
from discrete_diffusion import duality

try:  # the enumeration oracle may move into the package
    from discrete_diffusion.testing import oracle
except ImportError:
    import oracle

KS = [2, 3, 17, 50257]


@functools.cache
def reference_transform(a: float, K: int) -> float:
    """T(a) in float64 by adaptive quadrature of int phi(x) Phi(mu + x)^(K-1) dx, mu = a/s."""
    if a >= 1.0:
        return 1.0
    mu = a / math.sqrt((1.0 - a) * (1.0 + a))

    def f(x):
        return math.exp(-0.5 * x * x + (K - 1) * scipy.special.log_ndtr(mu + x)) / math.sqrt(2 * math.pi)

    step = scipy.special.ndtri(0.5 ** (1.0 / (K - 1))) - mu  # where Phi(mu + x)^(K-1) = 1/2
    points = [p for p in (step - 1.0, step, step + 1.0) if -12.0 < p < 12.0] or None
    val, _ = scipy.integrate.quad(f, -12.0, 12.0, points=points, epsabs=1e-14, epsrel=1e-13, limit=500)
    return (K * val - 1.0) / (K - 1)


def grid_a():
    """float32 signal levels over [0, 1), denser near 1 where large K lives."""
    a = np.concatenate([np.linspace(0.0, 0.9, 19), np.linspace(0.91, 0.999, 30), [0.9995, 0.9999]])
    return np.asarray(a, np.float32)


# ------------------------------------------------------------------------------------------------
# T, its derivative, the fast approximation
# ------------------------------------------------------------------------------------------------


def test_reference_quadrature_matches_closed_form_at_k2():
    for a in grid_a():
        a = float(a)
        closed = 2.0 * scipy.special.ndtr(a / (math.sqrt(2.0) * math.sqrt(1.0 - a * a))) - 1.0
        assert abs(reference_transform(a, 2) - closed) < 1e-12


@pytest.mark.parametrize("K", KS)
def test_transform_matches_quadrature(K):
    a = grid_a()
    T = np.asarray(dd.duality.diffusion_transform(a, K))
    ref = np.array([reference_transform(float(x), K) for x in a])
    assert np.max(np.abs(T - ref)) < 1e-6, np.max(np.abs(T - ref))
    assert T[0] == pytest.approx(0.0, abs=1e-7)
    assert float(dd.duality.diffusion_transform(1.0, K)) == 1.0
    if K == 2:
        closed = 2.0 * scipy.special.ndtr(a / (np.sqrt(2.0) * np.sqrt((1.0 - a) * (1.0 + a)))) - 1.0
        assert np.max(np.abs(T - closed)) < 1e-6


@pytest.mark.parametrize("K", KS)
def test_fast_approximation_matches_quadrature(K):
    a = np.asarray(np.concatenate([np.linspace(0.0, 0.9999, 2000), [1.0]]), np.float32)
    fast = np.asarray(duality.diffusion_transform(a, K, method="chebyshev"))
    quad = np.asarray(duality.diffusion_transform(a, K, method="quadrature"))
    assert np.max(np.abs(fast - quad)) < 1e-5, np.max(np.abs(fast - quad))
    # the training window (uniform alpha in [0.05, 0.95], Duo section 4.1) against float64 quad
    lo, hi = np.asarray(duality.inverse_diffusion_transform(jnp.array([0.05, 0.95]), K))
    window = np.linspace(lo, hi, 12).astype(np.float32)
    fast_w = np.asarray(duality.diffusion_transform(window, K, method="chebyshev"))
    ref_w = np.array([reference_transform(float(x), K) for x in window])
    assert np.max(np.abs(fast_w - ref_w)) < 1e-5
    # derivatives of the fit against the quadrature's
    d_fast = np.asarray(duality.diffusion_transform_derivative(window, K, method="chebyshev"))
    d_quad = np.asarray(duality.diffusion_transform_derivative(window, K))
    np.testing.assert_allclose(d_fast, d_quad, rtol=1e-4)


@pytest.mark.parametrize("K", KS)
def test_derivative_against_finite_differences(K):
    a = np.asarray(np.linspace(0.02, 0.99, 25), np.float32)
    if K == 50257:  # its transition sits at a in [0.9, 0.99]
        a = np.asarray(np.linspace(0.85, 0.995, 25), np.float32)
    h = 1e-5
    fd = np.array([(reference_transform(float(x) + h, K) - reference_transform(float(x) - h, K)) / (2 * h)
                   for x in a])
    for method in duality.METHODS:
        d = np.asarray(duality.diffusion_transform_derivative(a, K, method=method))
        np.testing.assert_allclose(d, fd, rtol=2e-4, atol=1e-6)
        g = np.asarray(jax.vmap(jax.grad(lambda x, m=method: duality.diffusion_transform(x, K, method=m)))(a))
        np.testing.assert_allclose(g, d, rtol=1e-6)
    assert float(duality.diffusion_transform_derivative(1.0, K)) == 0.0


def test_inverse_and_jit():
    alpha = jnp.array([0.05, 0.3, 0.95])
    for K in (3, 50257):
        a = duality.inverse_diffusion_transform(alpha, K)
        np.testing.assert_allclose(duality.diffusion_transform(a, K), alpha, atol=1e-6)
    # Duo's OWT window gamma in [-3.55, -1.85] <-> a = sqrt(sigmoid(-gamma)) in [0.930, 0.986]
    a = duality.inverse_diffusion_transform(jnp.array([0.05, 0.95]), 50257)
    np.testing.assert_allclose(a, [0.930, 0.986], atol=2e-3)
    f = jax.jit(duality.diffusion_transform, static_argnums=1, static_argnames="method")
    np.testing.assert_allclose(f(jnp.float32(0.5), 17, method="chebyshev"),
                               reference_transform(0.5, 17), atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        duality.diffusion_transform(0.5, 3, method="series")
    with pytest.raises(ValueError, match="num_classes"):
        duality.diffusion_transform(0.5, 1)


# ------------------------------------------------------------------------------------------------
# relaxed_sample: the law of z_t
# ------------------------------------------------------------------------------------------------


def reference_rule_topk(x0, a, tau, K, k, eps):
    """Duo's reference z_t on the same noise: x0 whenever w_x0 beats the k-th noise value."""
    a = np.broadcast_to(a, x0.shape)[..., None]
    w = a * np.eye(K)[x0] + np.sqrt((1 - a) * (1 + a)) * eps
    w_x0 = np.take_along_axis(w, x0[..., None], -1)[..., 0]
    others = np.where(np.eye(K, dtype=bool)[x0], -np.inf, w)
    order = np.argsort(-others, -1)
    kth = np.take_along_axis(others, order[..., k - 1:k], -1)[..., 0]
    return np.where(w_x0 > kth, x0, order[..., 0])


@pytest.mark.parametrize("a", [0.5, 0.85])
def test_law_of_z_t_is_the_uniform_marginal(a):
    """K = 3, L = 3: x0 from a toy law, z_t from relaxed_sample; the empirical law of z_t is the
    enumerated uniform-diffusion marginal at alpha = T(a), within the multinomial TV floor."""
    K, L, n = 3, 3, 20_000
    p0 = oracle.toy_law(K, L, seed=2)
    alpha = float(duality.diffusion_transform(a, K))
    law = oracle.Oracle(p0, "uniform", alpha).pt  # exact law of x_t, [K^L]
    rng = np.random.default_rng(0)
    x0 = oracle.Oracle(p0, "uniform", alpha).x0s[rng.choice(K**L, size=n, p=p0.reshape(-1))]
    floor = oracle.expected_tv_floor(law, n)
    bound = oracle.tv_bound(law, n)  # exact: below, but for a 5-SD tail
    for i, top_k in enumerate([None, 1, 2]):
        z, ids, weights = duality.relaxed_sample(jax.random.key(i), x0, a, K, tau=1e-3, top_k=top_k)
        tv = oracle.total_variation(oracle.empirical_law(np.asarray(z), K), law)
        assert tv < bound, (top_k, tv, floor)
        assert z.dtype == jnp.int32 and z.shape == (n, L)
        m = K if top_k is None else top_k + 1
        assert ids.shape == weights.shape == (n, L, m)
    # the reference rule (z_t = x0 whenever x0 is among the top k) fails the same test at k = 2
    eps = np.asarray(duality._std_normal(jax.random.key(9), (n, L, K)))
    z_ref = reference_rule_topk(x0, np.float32(a), 1e-3, K, 2, eps)
    tv_ref = oracle.total_variation(oracle.empirical_law(z_ref, K), law)
    assert tv_ref > 10 * floor, (tv_ref, floor)


def test_topk_law_at_gpt2_vocabulary():
    """K = 50257, k = 4, never building K-wide arrays: P(z_t = x0) = T(a) + (1 - T(a))/K within
    4.5 binomial standard deviations, and z_t != x0 is uniform over the other classes (mean id)."""
    K, n = 50257, 100_000
    a = float(duality.inverse_diffusion_transform(0.5, K))
    x0 = jnp.full((n // 500, 500), 7, jnp.int32)
    z, ids, weights = jax.jit(functools.partial(duality.relaxed_sample, num_classes=K, tau=1e-3, top_k=4))(
        jax.random.key(0), x0, a)
    alpha = float(duality.diffusion_transform(a, K))
    p = alpha + (1 - alpha) / K
    hit = float(jnp.mean(z == 7))
    assert abs(hit - p) < 4.5 * math.sqrt(p * (1 - p) / n), (hit, p)
    z = np.asarray(z)
    others = z[z != 7]
    mean_other = (K * (K - 1) / 2 - 7) / (K - 1)
    sd = math.sqrt((K**2 - 1) / 12 / len(others))
    assert abs(others.mean() - mean_other) < 4.5 * sd
    assert np.all(np.asarray(ids)[..., 0] == 7)
    assert np.all(np.asarray(weights).sum(-1) <= 1 + 1e-5)


# ------------------------------------------------------------------------------------------------
# relaxed_sample: the top-k input against the dense one on shared randomness
# ------------------------------------------------------------------------------------------------


DENSE = jax.jit(duality._dense_from_noise, static_argnums=2)
TOPK = jax.jit(duality._topk_from_noise, static_argnums=2)


@functools.partial(jax.jit, static_argnums=2)
def shared_noise(key, x0, K):
    """Dense noise eps and, from it, the top-k path's randomness (g, sorted others, their ids)."""
    eps = duality._std_normal(key, x0.shape + (K,))
    g = jnp.take_along_axis(eps, x0[..., None], -1)[..., 0]
    others = jnp.where(jax.nn.one_hot(x0, K, dtype=bool), -jnp.inf, eps)
    order = jnp.argsort(-others, -1)[..., : K - 1].astype(jnp.int32)
    top = jnp.take_along_axis(others, order, -1)
    return eps, g, top, order


def scatter(ids, weights, K):
    return jax.vmap(lambda i, w: jnp.zeros(K).at[i].add(w))(
        ids.reshape(-1, ids.shape[-1]), weights.reshape(-1, ids.shape[-1])).reshape(ids.shape[:-1] + (K,))


@pytest.mark.parametrize("tau", [1.0, 0.1, 1e-3])
def test_topk_with_all_coordinates_is_the_dense_softmax(tau):
    K, B, L = 50, 4, 64
    x0 = jax.random.randint(jax.random.key(1), (B, L), 0, K)
    a = jnp.array([0.0, 0.3, 0.7, 0.95])  # one level per sequence
    eps, g, top, order = shared_noise(jax.random.key(2), x0, K)
    at = duality._per_token(a, x0)
    z_d, ids_d, w_d = DENSE(x0, at, K, tau, eps)
    z_k, ids_k, w_k = TOPK(x0, at, K, tau, g, top, order)
    np.testing.assert_array_equal(z_k, z_d)
    assert np.all(np.sort(np.asarray(ids_k), -1) == np.arange(K))  # a permutation of the classes
    np.testing.assert_allclose(scatter(ids_k, w_k, K), w_d, atol=1e-6)
    np.testing.assert_array_equal(ids_d[0, 0], np.arange(K))
    E = jax.random.normal(jax.random.key(3), (K, 16))
    np.testing.assert_allclose(duality.embedding_bag(E, ids_k, w_k), w_d @ E, atol=1e-5)
    np.testing.assert_allclose(duality.embedding_bag(E, ids_d, w_d), w_d @ E, atol=1e-5)


def test_topk_z_t_is_the_dense_argmax():
    """K = 50, k = 3 on shared noise: z_t always equals argmax w, including the tokens whose x0 is
    among the top 3 without being the max (where Duo's reference rule returns x0)."""
    K, k = 50, 3
    x0 = jax.random.randint(jax.random.key(4), (64, 256), 0, K)
    a = jnp.linspace(0.2, 0.95, 64)
    eps, g, top, order = shared_noise(jax.random.key(5), x0, K)
    at = duality._per_token(a, x0)
    z_d, _, w_d = DENSE(x0, at, K, 1e-3, eps)
    z_k, ids_k, w_k = TOPK(x0, at, K, 1e-3, g, top[..., :k], order[..., :k])
    np.testing.assert_array_equal(z_k, z_d)
    z_ref = reference_rule_topk(np.asarray(x0), np.asarray(at), 1e-3, K, k, np.asarray(eps))
    wrong = z_ref != np.asarray(z_d)
    assert wrong.sum() > 100  # the reference rule's error is common, ours never happens
    assert np.all(z_ref[wrong] == np.asarray(x0)[wrong])
    # the slots' weights are the dense softmax up to the expected-vs-realised tail in Z
    w_slots = jnp.take_along_axis(w_d, ids_k, -1)
    assert float(jnp.max(jnp.abs(w_k - w_slots))) < 1e-3
    tail = 1.0 - np.asarray(w_k.sum(-1))
    assert tail.min() > -1e-5 and np.median(tail) < 1e-6


def test_order_statistics_distribution():
    """K = 50 (49 noise coordinates), k = 3: the sequential order statistics pass KS against their
    exact CDFs and against the sorted dense samples; slot ids are uniform ordered triples."""
    n_noise, k, N = 49, 3, 20_000
    top = np.asarray(duality._noise_order_statistics(jax.random.key(6), n_noise, (N, k)))
    assert np.all(np.diff(top, axis=-1) < 0)
    dense = -np.sort(-np.asarray(duality._std_normal(jax.random.key(7), (N, n_noise))), -1)[:, :k]

    def cdf_rank(x, r):  # P(X_(r) <= x): fewer than r of the n exceed x
        F = scipy.stats.norm.cdf(x)
        return sum(scipy.special.comb(n_noise, i) * (1 - F) ** i * F ** (n_noise - i) for i in range(r))

    for r in (1, 2, 3):
        assert scipy.stats.kstest(top[:, r - 1], lambda x, r=r: cdf_rank(x, r)).pvalue > 1e-3
        assert scipy.stats.kstest(dense[:, r - 1], lambda x, r=r: cdf_rank(x, r)).pvalue > 1e-3
        assert scipy.stats.ks_2samp(top[:, r - 1], dense[:, r - 1]).pvalue > 1e-3
    # gaps of the top-3 (joint law, not only the marginals)
    assert scipy.stats.ks_2samp(top[:, 0] - top[:, 2], dense[:, 0] - dense[:, 2]).pvalue > 1e-3

    # ids: K = 6, k = 3, x0 = 2: the 5 * 4 * 3 = 60 ordered triples of other classes are uniform
    K, n = 6, 60_000
    x0 = jnp.full((n,), 2, jnp.int32)
    ids = np.asarray(duality._distinct_other_ids(jax.random.key(8), x0, K, 3))
    assert np.all(ids != 2) and np.all(ids[:, 0] != ids[:, 1]) and np.all(ids[:, 1] != ids[:, 2])
    assert np.all(ids[:, 0] != ids[:, 2])
    code = ids[:, 0] * 36 + ids[:, 1] * 6 + ids[:, 2]
    counts = np.unique(code, return_counts=True)[1]
    assert len(counts) == 60
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    assert scipy.stats.chisquare(np.bincount(ids[:, 0], minlength=K)[[0, 1, 3, 4, 5]]).pvalue > 1e-3


def test_std_normal_and_order_statistics_tails():
    x = np.asarray(duality._std_normal(jax.random.key(11), (200_000,)))
    assert scipy.stats.kstest(x, "norm").pvalue > 1e-3
    assert abs(np.mean(x > 0) - 0.5) < 0.005
    # the largest of n = 50256 normals: its CDF is Phi^n; KS on 20k draws
    top = np.asarray(duality._noise_order_statistics(jax.random.key(11), 50256, (20_000, 2)))
    assert np.all(np.isfinite(top))
    assert scipy.stats.kstest(top[:, 0], lambda v: np.exp(50256 * scipy.special.log_ndtr(v))).pvalue > 1e-3


def test_truncated_mgf_closed_form():
    for c, sigma in [(0.0, 0.0), (1.5, 0.3), (-1.0, 2.0), (3.5, 40.0), (4.0, 500.0), (2.0, 1000.0)]:
        got = float(duality._log_truncated_mgf(jnp.float32(c), jnp.float32(sigma)))
        # log E[exp(sigma X) | X < c] = log int_{-inf}^c exp(sigma (x - c)) phi(x) dx + sigma c - log Phi(c)
        val, _ = scipy.integrate.quad(lambda x, c=c, s=sigma: np.exp(s * (x - c)) * scipy.stats.norm.pdf(x),
                                      -np.inf, c, epsabs=0, epsrel=1e-12)
        want = math.log(val) + sigma * c - scipy.special.log_ndtr(c)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-4), (c, sigma, got, want)


def test_tau_zero_traced_tau_and_errors():
    K, n, L = 3, 20_000, 3  # the shapes of test_law_of_z_t_is_the_uniform_marginal (compiled once)
    x0 = jax.random.randint(jax.random.key(12), (n, L), 0, K)
    for top_k in (None, 2):
        z, ids, w = duality.relaxed_sample(jax.random.key(13), x0, 0.5, K, tau=0, top_k=top_k)
        np.testing.assert_array_equal(scatter(ids[:100], w[:100], K), jax.nn.one_hot(z[:100], K))
        z2, _, w2 = duality.relaxed_sample(jax.random.key(13), x0, 0.5, K, tau=jnp.float32(0.1), top_k=top_k)
        np.testing.assert_array_equal(z2, z)  # tau changes the weights, never z_t
        assert np.all(np.asarray(w2).sum(-1) <= 1 + 1e-5) and float(w2.min()) > 0
    z, _, _ = duality.relaxed_sample(jax.random.key(0), x0, 1.0, K, tau=0.1, top_k=2)
    np.testing.assert_array_equal(z, x0)  # a = 1: no noise
    with pytest.raises(ValueError, match="top_k"):
        duality.relaxed_sample(jax.random.key(0), x0, 0.5, K, tau=0.1, top_k=K)
    with pytest.raises(ValueError, match="tau"):
        duality.relaxed_sample(jax.random.key(0), x0, 0.5, K, tau=-1.0)


def test_inside_a_jitted_step():
    """A method calls it inside its jitted loss with per-sequence levels and a traced tau."""
    K, L = 50, 16
    E = jax.random.normal(jax.random.key(14), (K, 8))

    @functools.partial(jax.jit, static_argnames="top_k")
    def step(key, x0, a, tau, top_k):
        z, ids, w = dd.duality.relaxed_sample(key, x0, a, K, tau=tau, top_k=top_k)
        return z, duality.embedding_bag(E, ids, w), dd.duality.diffusion_transform(a, K)

    x0 = jax.random.randint(jax.random.key(15), (4, L), 0, K)
    a = jnp.array([0.2, 0.5, 0.8, 0.95])
    z, h, alpha = step(jax.random.key(16), x0, a, jnp.float32(1e-3), top_k=3)
    assert z.shape == (4, L) and h.shape == (4, L, 8) and alpha.shape == (4,)


def test_same_key_gives_deterministic_trajectories():
    """The noise depends on the key only, so one key at several levels a is Duo's deterministic
    discrete trajectory z_a = argmax(a e_x0 + s eps) (consistency distillation): each token is
    either x0 or the argmax of its noise, and switches at most once along a."""
    K, n, L = 3, 20_000, 3  # shapes compiled by test_law_of_z_t_is_the_uniform_marginal
    x0 = jax.random.randint(jax.random.key(17), (n, L), 0, K)
    levels = np.linspace(0.0, 0.99, 12)
    for top_k in (None, 2):
        zs = np.stack([np.asarray(duality.relaxed_sample(jax.random.key(18), x0, float(a), K, tau=1e-3,
                                                         top_k=top_k)[0]) for a in levels])
        is_x0 = zs == np.asarray(x0)[None]
        assert np.all(np.diff(is_x0.astype(int), axis=0) >= 0)  # once x0, x0 for every larger a
        noise_winner = np.where(is_x0, -1, zs)
        assert np.all((noise_winner == noise_winner[:1]) | is_x0)  # one noise class per token
        assert is_x0[0].mean() < 0.4 and is_x0[-1].mean() > 0.9
