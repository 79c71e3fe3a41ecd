"""Duo: uniform-state diffusion as the argmax of a Gaussian diffusion (pure, jit-able functions).

References: Sahoo et al., "The Diffusion Duality" (Duo, ICML 2025) and Deschenaux, Gulcehre, Sahoo,
"The Diffusion Duality, Chapter II" (Duo II, ICLR 2026); digest in shared/papers/uniform_duo_mdlm.md
sections 3.3-3.4 and 4.2. The training method (loss, curriculum schedule, distillation) lives under
`discrete_diffusion/methods/`; this module only holds the math it calls.

Notation. K classes, one-hot e_x of the clean token x0, Gaussian signal level a in [0, 1] (Duo's
alpha-tilde), s = sqrt(1 - a^2). The Gaussian latent of one token is

    w = a e_x0 + s eps,        eps ~ N(0, I_K),                                              (1)

and its argmax z = argmax_j w_j has exactly the uniform-diffusion marginal (Duo eq. 10)

    P(z = j) = T(a) 1[j = x0] + (1 - T(a)) / K,                                              (2)
    T(a) = K/(K-1) [ int phi(x - a/s) Phi(x)^(K-1) dx - 1/K ]                                (3)
         = K/(K-1) [ I(a/s) - 1/K ],   I(mu) = int phi(x) Phi(mu + x)^(K-1) dx,

because I(mu) = P(w_x0 > max of the K - 1 other coordinates). K = 2: T(a) = 2 Phi(a/(sqrt(2) s)) - 1.
Derivative: dT/da = K/(K-1) J(a/s) / s^3 (d mu/da = 1/s^3) with
    J(mu) = int x phi(x) Phi(mu + x)^(K-1) dx = (K-1) int phi(x) phi(mu + x) Phi(mu + x)^(K-2) dx
(by parts; the second form has positive terms only and is the one evaluated).

Public functions (shapes in the docstrings):
    diffusion_transform(alpha_gauss, K)             T(a), eq. (3)
    diffusion_transform_derivative(alpha_gauss, K)  dT/da
    inverse_diffusion_transform(alpha, K)           a with T(a) = alpha (bisection)
    relaxed_sample(key, x0, alpha_gauss, K, tau=, top_k=)  -> z_t, ids, weights
    embedding_bag(embedding, ids, weights)          sum_j weights_j embedding[ids_j]
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from discrete_diffusion.sampling.categorical import exponential_from_bits

Array = jnp.ndarray

METHODS = ("quadrature", "chebyshev")

# Quadrature of I(mu) and J(mu): trapezoid rule on x in [-9, 9], step 0.1 (181 nodes). The
# integrands are entire and decay like phi(x), so the rule converges geometrically: in float64 its
# error is < 1e-12 for K <= 50257 (checked against scipy.integrate.quad in tests/test_duality.py);
# in float32 (this module; no jax_enable_x64) the error is rounding, about 1e-7. phi(9) ~ 1e-18.
_QUAD_HALF_WIDTH = 9.0
_QUAD_STEP = 0.1
_QUAD_NODES = np.linspace(-_QUAD_HALF_WIDTH, _QUAD_HALF_WIDTH,
                          int(round(2 * _QUAD_HALF_WIDTH / _QUAD_STEP)) + 1)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

# Chebyshev fit of T as a function of mu = a/s on [0, mu_max(K)], mu_max = sqrt(2 log K) + 8: beyond
# it 1 - T < 1e-10 for every K (the max of K - 1 normals is below sqrt(2 log K) + 1 but for
# probability ~1e-12), so T is clamped there. 64 interpolation nodes give a float64 fit error < 1e-13
# at K in {2, 3, 17, 50257}; coefficients below 1e-13 are dropped.
_CHEB_NODES = 64


# --------------------------------------------------------------------------------------------------
# Normal helpers (float32, accurate in both tails)
# --------------------------------------------------------------------------------------------------


def _log_ndtr(y: Array) -> Array:
    """log Phi(y), accurate to float32 rounding everywhere.

    jax's log_ndtr loses ~1e-3 relative precision for y in (3, 6) (it forms log(1 - p) for tiny
    p); here y > 0 uses log1p(-Phi(-y)), Phi(-y) = erfc(y/sqrt 2)/2 (relative precision). The
    quadrature multiplies this by K - 1 = 50256, so the difference matters.
    """
    y = jnp.asarray(y, jnp.float32)
    pos = jnp.log1p(-0.5 * jax.scipy.special.erfc(jnp.maximum(y, 0.0) / math.sqrt(2.0)))
    return jnp.where(y > 0, pos, jax.scipy.special.log_ndtr(jnp.minimum(y, 0.0)))


def _std_normal(key: Array, shape) -> Array:
    """N(0, 1) float32 with both tails resolved to 2^-33 (|eps| up to 6.35).

    One uint32 per value, like `jax.random.normal`, but symmetric: the top bit picks the sign and
    the other 31 bits a lower-tail probability p = (m + 1/2) 2^-32 in (0, 1/2), eps = -+ndtri(p).
    `jax.random.normal` maps a 23-bit uniform through erfinv, so |eps| <= 5.3: at K = 50257 the max
    of the K - 1 noise coordinates would be clipped in about 0.5% of the tokens.
    """
    bits = jax.random.bits(key, shape, jnp.uint32)
    upper = bits >= jnp.uint32(1 << 31)
    m = jnp.where(upper, ~bits, bits)
    z = jax.scipy.special.ndtri((m.astype(jnp.float32) + 0.5) * 2.0**-32)
    return jnp.where(upper, -z, z)


def _ndtri_of_exp_neg(S: Array) -> Array:
    """Phi^{-1}(exp(-S)) for S >= 0, precise for small S (upper tail: -Phi^{-1}(-expm1(-S)))."""
    S = jnp.clip(S, 0.0, 87.0)  # exp(-87) is the smallest normal float32; ndtri(0) = -inf
    upper = -jax.scipy.special.ndtri(-jnp.expm1(-jnp.minimum(S, math.log(2.0))))
    lower = jax.scipy.special.ndtri(jnp.exp(-jnp.maximum(S, math.log(2.0))))
    return jnp.where(math.log(2.0) > S, upper, lower)


def _log_truncated_mgf(c: Array, sigma: Array) -> Array:
    """log E[exp(sigma X) | X < c], X ~ N(0, 1):  sigma^2/2 + log Phi(c - sigma) - log Phi(c).

    Written as sigma c - c^2/2 - log 2 + log erfcx((sigma - c)/sqrt 2) - log Phi(c) so that the
    sigma^2/2 ~ 1e5 (sigma = s/tau, tau = 1e-3) never cancels against log Phi(c - sigma) in float32.
    """
    return (sigma * c - 0.5 * c * c - math.log(2.0)
            + jnp.log(jax.scipy.special.erfcx((sigma - c) / math.sqrt(2.0))) - _log_ndtr(c))


# --------------------------------------------------------------------------------------------------
# The diffusion transformation operator T
# --------------------------------------------------------------------------------------------------


def _check_k(num_classes) -> int:
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be a Python int >= 2, got {num_classes!r}")
    return int(num_classes)


def _one_minus_sq(a: Array) -> Array:
    """1 - a^2 as (1 - a)(1 + a): exact 1 - a for a in [1/2, 1], so mu = a/s keeps float32 precision
    near a = 1 (1 - a*a would lose ~1e-5 of mu at a = 0.99)."""
    return (1.0 - a) * (1.0 + a)


def _quadrature(a: Array, K: int) -> tuple[Array, Array]:
    """(T(a), dT/da) by the trapezoid rule, float32, shapes of `a`."""
    s2 = _one_minus_sq(a)
    mu = a / jnp.sqrt(s2)  # +inf at a = 1
    x = jnp.asarray(_QUAD_NODES, jnp.float32)
    y = mu[..., None] + x  # [..., 181]
    log_phi_x = -0.5 * x * x - _LOG_SQRT_2PI
    log_cdf_y = _log_ndtr(y)
    integral = _QUAD_STEP * jnp.sum(jnp.exp(log_phi_x + (K - 1) * log_cdf_y), -1)  # I(mu)
    # J(mu) = int x phi(x) Phi(mu+x)^(K-1) dx = (K-1) int phi(x) phi(mu+x) Phi(mu+x)^(K-2) dx (by
    # parts): positive terms, no cancellation, so dT/da keeps its relative precision as T -> 1.
    log_g = log_phi_x - 0.5 * y * y - _LOG_SQRT_2PI + (K - 2) * log_cdf_y
    moment = _QUAD_STEP * (K - 1) * jnp.sum(jnp.exp(log_g), -1)  # J(mu)
    T = jnp.clip((K * integral - 1.0) / (K - 1), 0.0, 1.0)
    dT = jnp.where(a < 1.0, K / (K - 1) * moment / (s2 * jnp.sqrt(s2)), 0.0)
    return T, dT


def _log_ndtr_f64(y: np.ndarray) -> np.ndarray:
    """log Phi(y) in float64 numpy without scipy (math.erfc per element)."""
    erfc = np.frompyfunc(math.erfc, 1, 1)
    y = np.asarray(y, np.float64)
    with np.errstate(divide="ignore"):
        return np.where(
            y > 0,
            np.log1p(-0.5 * erfc(np.abs(y) / math.sqrt(2.0)).astype(np.float64)),
            np.log(0.5 * erfc(-np.minimum(y, 0.0) / math.sqrt(2.0)).astype(np.float64)),
        )


def _transform_f64(mu: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, log dT/dmu) as functions of mu = a/s, float64 numpy (step 0.05 on [-10, 10]; < 1e-13)."""
    x = np.arange(-10.0, 10.0 + 1e-9, 0.05)
    y = np.asarray(mu, np.float64)[:, None] + x
    log_phi_x = -0.5 * x * x - _LOG_SQRT_2PI
    log_cdf_y = _log_ndtr_f64(y)
    integral = 0.05 * np.exp(log_phi_x + (K - 1) * log_cdf_y).sum(-1)
    log_g = log_phi_x - 0.5 * y * y - _LOG_SQRT_2PI + (K - 2) * log_cdf_y
    top = log_g.max(-1)
    log_moment = math.log(0.05 * (K - 1)) + top + np.log(np.exp(log_g - top[:, None]).sum(-1))
    return (K * integral - 1.0) / (K - 1), math.log(K / (K - 1)) + log_moment


@functools.cache
def _chebyshev_coefficients(K: int) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """(mu_max, Chebyshev coefficients on [0, mu_max] of T(mu) and of log dT/dmu), cached per K.

    The derivative is fitted in log space (it is positive and falls like exp(-mu^2/4)), so
    dT/da keeps its relative precision where T -> 1. Host-side numpy, float64, ~0.1 s once per K;
    the coefficients become constants of the trace.
    """
    mu_max = math.sqrt(2.0 * math.log(K)) + 8.0
    u = np.cos(np.pi * (np.arange(_CHEB_NODES) + 0.5) / _CHEB_NODES)  # Chebyshev points in [-1, 1]
    T, log_dT = _transform_f64((u + 1.0) * 0.5 * mu_max, K)

    def fit(values):
        coef = np.polynomial.chebyshev.chebfit(u, values, _CHEB_NODES - 1)
        keep = np.nonzero(np.abs(coef) > 1e-13 * max(1.0, np.abs(coef).max()))[0]
        return tuple(coef[: keep[-1] + 1].tolist())

    return mu_max, fit(T), fit(log_dT)


def _clenshaw(u: Array, coef: tuple[float, ...]) -> Array:
    """sum_n coef[n] T_n(u) by Clenshaw's recurrence (float32)."""
    b1 = jnp.zeros_like(u)
    b2 = jnp.zeros_like(u)
    for c in coef[:0:-1]:
        b1, b2 = 2.0 * u * b1 - b2 + c, b1
    return u * b1 - b2 + coef[0]


def _chebyshev(a: Array, K: int) -> tuple[Array, Array]:
    """(T(a), dT/da) from the cached Chebyshev fit in mu = a/s (clamped to [0, mu_max])."""
    mu_max, coef, log_dcoef = _chebyshev_coefficients(K)
    s2 = _one_minus_sq(a)
    mu = a / jnp.sqrt(s2)
    inside = mu < mu_max
    u = 2.0 * jnp.clip(mu, 0.0, mu_max) / mu_max - 1.0
    T = jnp.clip(_clenshaw(u, coef), 0.0, 1.0)
    dT = jnp.where(inside & (a < 1.0), jnp.exp(_clenshaw(u, log_dcoef)) / (s2 * jnp.sqrt(s2)), 0.0)
    return T, dT


@functools.partial(jax.jit, static_argnums=(1, 2))
def _transform_and_derivative(a: Array, K: int, method: str) -> tuple[Array, Array]:
    if method == "quadrature":
        return _quadrature(a, K)
    if method == "chebyshev":
        return _chebyshev(a, K)
    raise ValueError(f"method={method!r} is not one of {list(METHODS)}")


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _transform(a: Array, K: int, method: str) -> Array:
    return _transform_and_derivative(a, K, method)[0]


@_transform.defjvp
def _transform_jvp(K, method, primals, tangents):
    (a,), (da,) = primals, tangents
    T, dT = _transform_and_derivative(a, K, method)
    return T, dT * da


def diffusion_transform(alpha_gauss, num_classes: int, *, method: str = "quadrature") -> Array:
    """Duo's diffusion transformation operator T(a), eq. (3) of the module docstring.

    The uniform-diffusion alpha reached by the argmax of the Gaussian latent (1) at signal level
    a = `alpha_gauss` (float, any shape, values in [0, 1]; T(0) = 0, T(1) = 1). Returns float32 of
    the same shape. Differentiable: `jax.grad` uses `diffusion_transform_derivative`.

    `method`:
      'quadrature' (the default): trapezoid rule with 181 nodes on the integral itself, exact to
        float32 rounding (|error| < 1e-6 at every a and K; ~1e-7 measured at K = 2, 3, 17, 50257).
        Default because it is the definition: nothing is fitted, nothing is cached on the host, any
        K works inside jit, and its cost (181 log-CDFs per value of a; one value per sequence in
        training) is negligible next to a network forward pass: 1.6 ms for 512 values on this
        2-core CPU, against 37 us for 'chebyshev'.
      'chebyshev': the fast approximation, a Chebyshev interpolant of T in mu = a/s on
        [0, sqrt(2 log K) + 8] (64 nodes, fitted once per K on the host in float64 and cached;
        clamped beyond, where 1 - T < 1e-10), evaluated by Clenshaw's recurrence (<= 64 fused
        multiply-adds). Agrees with the quadrature to < 1e-6 over all of [0, 1) (3e-7 measured at
        K = 2, 3, 17, 50257; dT/da fitted in log space, relative error < 1e-4), so in particular
        to 1e-5 over the training range. Use it where T is evaluated per token or in sampling
        loops. (Duo II fits a degree-9 polynomial in t, or sums a 150-term series; Duo caches
        scipy.quad on 1e5 points and reads it by nearest index.)
    """
    K = _check_k(num_classes)
    return _transform(jnp.asarray(alpha_gauss, jnp.float32), K, method)


def diffusion_transform_derivative(alpha_gauss, num_classes: int, *, method: str = "quadrature") -> Array:
    """dT/da = K/(K-1) J(a/s) / s^3 with J(mu) = int x phi(x) Phi(mu + x)^(K-1) dx (same nodes or
    the derivative of the same Chebyshev fit as `diffusion_transform`; 0 at a = 1). For the
    uniform-process rate: alpha_t = T(a_t), alpha'_t = T'(a_t) a'_t (chain rule). Duo's reference
    code takes alpha'_t by a forward finite difference of its lookup table instead."""
    K = _check_k(num_classes)
    return _transform_and_derivative(jnp.asarray(alpha_gauss, jnp.float32), K, method)[1]


def inverse_diffusion_transform(alpha, num_classes: int, *, method: str = "quadrature",
                                num_iters: int = 40) -> Array:
    """a in [0, 1] with T(a) = alpha (T is increasing), by bisection (`num_iters` halvings, 2^-40).

    For choosing the Gaussian window of the curriculum from a window of uniform alphas (Duo keeps
    alpha_t = T(a_t) in about [0.05, 0.95])."""
    K = _check_k(num_classes)
    alpha = jnp.asarray(alpha, jnp.float32)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = _transform_and_derivative(mid, K, method)[0] < alpha
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, num_iters, body, (jnp.zeros_like(alpha), jnp.ones_like(alpha)))
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------------------------------
# Relaxed (tempered-softmax) samples of the Gaussian latent, dense and top-k
# --------------------------------------------------------------------------------------------------


def _per_token(alpha_gauss, x0: Array) -> Array:
    """alpha_gauss of shape [], x0.shape[:-1] (one level per sequence) or x0.shape -> x0.shape."""
    a = jnp.asarray(alpha_gauss, jnp.float32)
    if a.ndim < x0.ndim:
        a = a[..., None]
    return jnp.broadcast_to(a, x0.shape)


def _dense_from_noise(x0: Array, a: Array, K: int, tau, eps: Array) -> tuple[Array, Array, Array]:
    """The dense relaxed sample on given noise. x0 int [..., L], a [..., L], eps [..., L, K]."""
    s = jnp.sqrt(_one_minus_sq(a))
    w = s[..., None] * eps + a[..., None] * jax.nn.one_hot(x0, K, dtype=jnp.float32)  # [..., L, K]
    z_t = jnp.argmax(w, -1).astype(jnp.int32)  # [..., L]
    weights = _hard(tau, lambda t: jax.nn.softmax(w / t, -1),  # [..., L, K]
                    lambda: jax.nn.one_hot(z_t, K, dtype=jnp.float32))
    ids = jnp.broadcast_to(jnp.arange(K, dtype=jnp.int32), w.shape)  # [..., L, K]
    return z_t, ids, weights


def _topk_from_noise(x0: Array, a: Array, K: int, tau, g: Array, top: Array,
                     other_ids: Array) -> tuple[Array, Array, Array]:
    """The top-k relaxed sample on given randomness (deterministic).

    x0 int [..., L]; a [..., L]; g [..., L] the standard-normal noise of the x0 coordinate; top
    [..., L, k] the k largest of the K - 1 other standard-normal noise coordinates, descending;
    other_ids int [..., L, k] their classes (distinct, != x0). Returns z_t [..., L], ids and
    weights [..., L, k + 1] with slot 0 = x0.
    """
    k = top.shape[-1]
    s = jnp.sqrt(_one_minus_sq(a))
    w_x0 = a + s * g  # [..., L]   (same float ops as the dense path: a * 1 + s * eps)
    w_top = s[..., None] * top  # [..., L, k]
    x0_wins = w_x0 > w_top[..., 0]
    z_t = jnp.where(x0_wins, x0, other_ids[..., 0]).astype(jnp.int32)
    ids = jnp.concatenate([x0[..., None].astype(jnp.int32), other_ids.astype(jnp.int32)], -1)

    def soft(t):
        logits = jnp.concatenate([w_x0[..., None], w_top], -1) / t  # [..., L, k + 1]
        # shift by the max before normalising (as jax.nn.softmax does): logits ~ 1/tau = 1e3 would
        # otherwise put a rounding error of ~6e-5 into log Z and every weight
        top_logit = jnp.max(logits, -1, keepdims=True)  # [..., L, 1]
        rel = logits - top_logit
        total = jnp.sum(jnp.exp(rel), -1)  # [..., L], in [1, k + 1]
        num_tail = K - 1 - k  # noise coordinates not simulated, all below top[..., -1]
        if num_tail > 0:
            log_tail = math.log(num_tail) + _log_truncated_mgf(top[..., -1], s / t)  # [..., L]
            total = total + jnp.exp(log_tail - top_logit[..., 0])
        return jnp.exp(rel) / total[..., None]

    weights = _hard(tau, soft, lambda: jax.nn.one_hot(jnp.where(x0_wins, 0, 1), k + 1, dtype=jnp.float32))
    return z_t, ids, weights


def _check_tau(tau) -> None:
    if isinstance(tau, (int, float, np.floating, np.integer)) and tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")


def _hard(tau, logits_fn, one_hot_fn):
    """tempered softmax weights, or the one-hot of the argmax where tau == 0 (tau may be traced,
    e.g. annealed to 0 inside one jitted step; both branches are cheap elementwise ops)."""
    tau = jnp.asarray(tau, jnp.float32)
    zero = tau == 0
    soft = logits_fn(jnp.where(zero, 1.0, tau))
    return jnp.where(zero, one_hot_fn(), soft)


def _noise_order_statistics(key: Array, num_noise: int, shape) -> Array:
    """The k = shape[-1] largest of `num_noise` iid N(0, 1), descending, exactly, in O(k).

    Sequential order statistics (Renyi): with U_(1) > U_(2) > ... the descending uniform order
    statistics of n = num_noise draws, U_(1) = V_1^(1/n) and U_(j) = U_(j-1) V_j^(1/(n-j+1)) for
    iid uniform V_j, i.e. -log U_(j) = S_j = sum_{i<=j} E_i / (n - i + 1) with E_i ~ Exp(1): the max
    by the inverse CDF of U^(1/n), then each next one conditioned below the previous. The normal
    values are Phi^{-1}(exp(-S_j)), taken through the upper-tail form -Phi^{-1}(-expm1(-S_j)) so
    that U_(1) ~ 1 - 1e-5 (n = 50256) keeps float32 precision. E_i comes from 64 random bits
    (`exponential_from_bits`), so the max is resolved to probabilities ~2^-64 / n.
    """
    k = shape[-1]
    e = exponential_from_bits(jax.random.bits(key, (2,) + tuple(shape), jnp.uint32))  # [..., k]
    S = jnp.cumsum(e / (num_noise - jnp.arange(k, dtype=jnp.float32)), -1)
    return _ndtri_of_exp_neg(S)


def _distinct_other_ids(key: Array, x0: Array, K: int, k: int) -> Array:
    """k classes uniformly without replacement among the K - 1 classes != x0, in uniformly random
    order (an ordered k-tuple). x0 [..., L] -> int32 [..., L, k].

    Robert Floyd's algorithm draws a uniform k-subset of {0..K-2} in k steps (slot t: j ~ U{0..i},
    i = K-1-k+t, take i instead if j is already taken); its slot order is NOT uniform (slot 0 is
    never above K-1-k), so the slots are shuffled by an argsort of random bits; then classes >= x0
    shift up by one. Duo's reference code omits the shuffle and pairs the largest noise value with
    Floyd's slot 0, so its z_t is biased away from the highest k - 1 class ids.
    """
    n = K - 1
    k_floyd, k_perm = jax.random.split(key)
    shape = x0.shape + (k,)
    slot = jnp.arange(k)

    def body(t, buf):
        i = n - k + t
        j = jax.random.randint(jax.random.fold_in(k_floyd, t), x0.shape, 0, i + 1, dtype=jnp.int32)
        dup = jnp.any((buf == j[..., None]) & (slot < t), -1)
        return buf.at[..., t].set(jnp.where(dup, i, j))

    buf = jax.lax.fori_loop(0, k, body, jnp.zeros(shape, jnp.int32))
    order = jnp.argsort(jax.random.bits(k_perm, shape, jnp.uint32), -1)
    ids = jnp.take_along_axis(buf, order, -1)
    return ids + (ids >= x0[..., None]).astype(jnp.int32)


def relaxed_sample(key: Array, x0, alpha_gauss, num_classes: int, *, tau, top_k: int | None = None
                   ) -> tuple[Array, Array, Array]:
    """Sample the Gaussian latent (1) of every token; return its argmax and its tempered softmax.

    Args:
      key: a jax PRNG key.
      x0: int [..., L] clean tokens.
      alpha_gauss: Gaussian signal level a, shape [], x0.shape[:-1] (per sequence) or x0.shape.
      num_classes: K (Python int).
      tau: scalar softmax temperature >= 0 (Python float or traced, so it can be annealed inside a
        jitted step); tau = 0 gives the one-hot of z_t (the tau -> 0 limit).
      top_k: None for the dense input; else k in [1, K - 1], the number of noise order statistics.

    Returns (z_t, ids, weights):
      z_t: int32 [..., L], argmax_j w_j. Its law is exactly eq. (2): Cat(T(a) e_x0 + (1 - T(a))/K).
      ids: int32 [..., L, m]; weights: float32 [..., L, m]: the sparse tempered softmax
        softmax(w / tau) = sum_j weights[j] e_{ids[j]}. The network input is the embedding bag
        sum_j weights[j] E[ids[j]] (`embedding_bag`; for the dense input use weights @ E).
        Dense (top_k None): m = K, ids = arange(K), weights = softmax(w / tau) (Duo eq. 21).
        Top-k: m = top_k + 1: slot 0 is x0 (always), slots 1..k the k largest noise coordinates.

    Top-k (Duo II's efficient curriculum; never builds a K-wide array). Per token draw
      g ~ N(0, 1), the x0 coordinate: w_x0 = a + s g;
      the k largest of the K - 1 other coordinates, s e_(1) > ... > s e_(k), by sequential order
        statistics (`_noise_order_statistics`, exact);
      their classes: k distinct ids uniformly among the K - 1 classes != x0, in random order.
    This is the exact joint law of (w_x0, the top-k noise values, their classes) under (1). Then
      z_t = x0 if w_x0 > s e_(1) else ids[1]: exactly argmax w, so the law (2) holds for any k.
        (Duo's reference code sets z_t = x0 whenever w_x0 beats the k-th noise value, i.e. whenever
        x0 is among the top k; that is the argmax only for k = 1 and inflates P(z_t = x0) above
        T(a). We follow the paper's definition z_t = argmax w.)
      weights_j = exp(w_j / tau - log Z), j over x0 and the k slots, with the softmax denominator
        Z = exp(w_x0/tau) + sum_j exp(s e_(j)/tau) + (K - 1 - k) E[exp(s X/tau) | X < e_(k)],
        X ~ N(0, 1): the K - 1 - k unsimulated noise coordinates are, given e_(k), iid N(0, 1)
        truncated below e_(k), and their sum enters by its closed-form expectation
        E[exp(sigma X) | X < c] = exp(sigma^2/2) Phi(c - sigma) / Phi(c), sigma = s/tau.
    How the tail enters: only through Z. The weights are the slots' softmax weights and sum to
    1 - tail_mass, tail_mass = (K-1-k) E[...] / Z; the tail's own embeddings are left out of the
    bag (their expected contribution is tail_mass times the mean embedding of the other classes;
    a method that wants it adds (1 - weights.sum(-1)) * mean(E) itself). This replaces Z by its
    conditional expectation, which near-ties dominate (the next noise value within tau of e_(k) is
    rare but weighs exp(.)), so small k costs every token some mass. Measured at K = 32768,
    tau = 1e-3, a in [0.93, 0.986] (Duo's OWT window): tail mass median 6e-3, p99 5e-2 at k = 1;
    median 0, p99 5e-3 at k = 2; p99 6e-8 at k = 8. Prefer k >= 8 (k + 1 bag rows per token).
    Duo II's code folds the tail the same way, but x0 only gets a slot when it beats the k-th noise
    value (otherwise its term is in Z but not in the bag), and it pairs the largest noise value with
    the first id of Robert Floyd's sampler, whose slot order is not uniform (`_distinct_other_ids`).
    Here x0 always has slot 0 (one extra bag row; top_k = K - 1 is then exactly the dense softmax)
    and the ids are shuffled.
    Shared randomness: the dense path draws eps ~ N(0, I_K) per token; the top-k path with
    g = eps[x0], e = the other coordinates of eps sorted descending and other_ids = their classes
    (`_topk_from_noise`) returns the same z_t and, scattered to ids, the same weights (k = K - 1:
    the dense softmax to float rounding). relaxed_sample(top_k=k) draws (g, e, other_ids) from
    that joint law directly.

    Randomness is float32 (no jax_enable_x64): the dense noise from `_std_normal` (tails to
    6.35 sigma), the order statistics from 64-bit exponentials.
    """
    K = _check_k(num_classes)
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= K - 1):
        raise ValueError(f"top_k must be None or an int in [1, num_classes - 1 = {K - 1}], got {top_k!r}")
    _check_tau(tau)
    return _relaxed_sample(key, jnp.asarray(x0, jnp.int32), jnp.asarray(alpha_gauss, jnp.float32),
                           jnp.asarray(tau, jnp.float32), K, None if top_k is None else int(top_k))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _relaxed_sample(key, x0, alpha_gauss, tau, K: int, top_k: int | None):
    a = _per_token(alpha_gauss, x0)  # [..., L]
    if top_k is None:
        eps = _std_normal(key, x0.shape + (K,))  # [..., L, K]
        return _dense_from_noise(x0, a, K, tau, eps)
    k_g, k_top, k_ids = jax.random.split(key, 3)
    g = _std_normal(k_g, x0.shape)  # [..., L]
    top = _noise_order_statistics(k_top, K - 1, x0.shape + (top_k,))  # [..., L, k]
    other_ids = _distinct_other_ids(k_ids, x0, K, top_k)  # [..., L, k]
    return _topk_from_noise(x0, a, K, tau, g, top, other_ids)


def embedding_bag(embedding: Array, ids: Array, weights: Array) -> Array:
    """sum_j weights[..., j] embedding[ids[..., j]]: embedding [K, D], ids/weights [..., m] ->
    [..., D] (gathers m rows per token; for the dense input (m = K) use weights @ embedding)."""
    rows = jnp.take(embedding, ids, axis=0)  # [..., m, D]
    return jnp.einsum("...m,...md->...d", weights.astype(rows.dtype), rows)
