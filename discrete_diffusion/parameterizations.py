"""Exact conversions between what a network's logits can mean, at one time t.

For position i write the likelihood of the current token under each clean value v,
l(v) = q_t(x_t^i | x_0^i = v) = alpha_t 1[v = x_t^i] + (1 - alpha_t) pi(x_t^i), and

  * denoiser      mu(v) = p(x_0^i = v | x_t)                   (logits `[..., L, K]`)
  * LOO posterior rho(v) = p(x_0^i = v | x_t^{-i})              (logits `[..., L, K]`)
  * score         s(y)  = p_t(x_t with x^i <- y) / p_t(x_t)      (log-ratios `[..., L, V]`)

Because the forward noise is independent per token, x_t^i and x_t^{-i} are independent given x_0^i,
so Bayes' rule gives mu ∝ l * rho, i.e.

    log mu = log rho + log l + const,          log rho = log mu - log l + const.        (1)

The single-site conditional of the marginal p_t is c(y) = p_t(x^i = y | x_t^{-i}) =
sum_v rho(v) q_t(y | v) = alpha_t rho(y) + (1 - alpha_t) pi(y), hence

    log s(y) = log c(y) - log c(x_t^i),        rho(y) ∝ c(y) - (1 - alpha_t) pi(y),       (2)

with c = softmax(log s) over the V states. For the uniform process log l = log1p(K a/(1 - a)) at
x_t^i (+ const), so (1) is the shift of rev_udm; for the masked process at a masked position l is
constant and the LOO posterior equals the denoiser.

Where a conversion is undefined. Masked process, unmasked position (x_t^i = c is clean): the
denoiser is onehot(c) whatever rho is, so rho cannot be recovered from it. `denoiser_to_loo`
returns the input logits unchanged there (log-normalized), and `loo_to_denoiser` returns
log onehot(c) (0 at c, NEG_INF elsewhere). `loo_to_score` at such a position uses the given logits
as rho, which is exact when they are the LOO posterior; no sampler of the masked process reads
those entries (an unmasked token has no reverse moves).

All functions take logits up to a per-position constant and return log-normalized logits (or
log-ratios for the score); they are exact identities, jit- and vmap-able.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from discrete_diffusion.processes import NEG_INF, TINY, InterpolatingProcess, per_token

Array = jnp.ndarray

NAMES = ("denoiser", "loo", "score")


def _observed(proc: InterpolatingProcess, x_t: Array) -> Array:
    return ~proc.is_noisy(x_t)[..., None]


def loo_to_denoiser(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
    """log mu = log_softmax(log rho + log l), equation (1). `[..., L, K]` -> `[..., L, K]`."""
    log_mu = jax.nn.log_softmax(logits + proc.log_likelihood(x_t, t), axis=-1)
    carry = jnp.where(jax.nn.one_hot(x_t, logits.shape[-1]) > 0, 0.0, NEG_INF)
    return jnp.where(_observed(proc, x_t), carry, log_mu)


def denoiser_to_loo(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
    """log rho = log_softmax(log mu - log l), equation (1). `[..., L, K]` -> `[..., L, K]`.

    At unmasked positions of the masked process the LOO posterior is not identifiable from the
    denoiser; the input logits are returned there (log-normalized).
    """
    log_rho = jax.nn.log_softmax(logits - proc.log_likelihood(x_t, t), axis=-1)
    passthrough = jax.nn.log_softmax(logits, axis=-1)
    return jnp.where(_observed(proc, x_t), passthrough, log_rho)


def loo_to_score(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
    """log s(y) = log c(y) - log c(x_t^i), c = alpha rho + (1 - alpha) pi, equation (2).

    `[..., L, K]` LOO logits -> `[..., L, V]` log-ratios (0 at y = x_t^i).
    """
    alpha = proc.alpha(per_token(t, x_t))[..., None]
    log_rho = jax.nn.log_softmax(logits, axis=-1)
    pad = proc.num_states - proc.num_classes
    log_rho_v = jnp.pad(log_rho, [(0, 0)] * (log_rho.ndim - 1) + [(0, pad)], constant_values=NEG_INF)
    log_c = jnp.logaddexp(
        jnp.log(jnp.maximum(alpha, TINY)) + log_rho_v,
        jnp.log(jnp.maximum(1.0 - alpha, TINY)) + proc.log_prior(),
    )
    log_c_xt = jnp.take_along_axis(log_c, x_t[..., None], axis=-1)
    return log_c - log_c_xt


def score_to_loo(proc: InterpolatingProcess, log_ratios: Array, x_t: Array, t: Array) -> Array:
    """log rho(y) = log(c(y) - (1 - alpha) pi(y)) + const with c = softmax(log s), equation (2).

    `[..., L, V]` log-ratios -> `[..., L, K]` LOO logits. An inexact score can make
    c(y) < (1 - alpha) pi(y); such entries are floored at probability TINY.
    """
    alpha = proc.alpha(per_token(t, x_t))[..., None]
    log_c = jax.nn.log_softmax(log_ratios, axis=-1)[..., : proc.num_classes]
    log_prior = proc.log_prior()[: proc.num_classes]
    # log(c - (1 - alpha) pi) = log c + log(1 - exp(log((1 - alpha) pi) - log c)).
    log_noise = jnp.log(jnp.maximum(1.0 - alpha, TINY)) + log_prior
    frac = jnp.exp(jnp.minimum(log_noise - log_c, 0.0))
    log_rho = log_c + jnp.log(jnp.maximum(1.0 - frac, TINY))
    log_rho = jnp.where(log_noise - log_c >= 0.0, jnp.log(TINY), log_rho)
    return jax.nn.log_softmax(log_rho, axis=-1)


def denoiser_to_score(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
    """Score log-ratios from denoiser logits: loo_to_score(denoiser_to_loo(.))."""
    return loo_to_score(proc, denoiser_to_loo(proc, logits, x_t, t), x_t, t)


def score_to_denoiser(proc: InterpolatingProcess, log_ratios: Array, x_t: Array, t: Array) -> Array:
    """Denoiser logits from score log-ratios: loo_to_denoiser(score_to_loo(.))."""
    return loo_to_denoiser(proc, score_to_loo(proc, log_ratios, x_t, t), x_t, t)


def model_score_to_ratios(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
    """Completes a score network's output `[..., L, K]` (log s(y) for the K clean y) to `[..., L, V]`.

    The self-ratio is forced to 1 (log s(x_t^i) = 0, as SEDD does). For the masked process the
    mask entry is 0 at masked positions; at unmasked positions x_t^i = c it follows from (2):
    s(mask) = (1 - alpha) / (alpha rho(c)) with rho ∝ s over the clean values.
    """
    k = proc.num_classes
    self_logit = jnp.take_along_axis(logits, jnp.minimum(x_t, k - 1)[..., None], axis=-1)
    if proc.num_states == k:
        return logits - self_logit
    rel = logits - jnp.where(_observed(proc, x_t), self_logit, 0.0)
    alpha = proc.alpha(per_token(t, x_t))[..., None]
    log_mask_ratio = (
        jnp.log(jnp.maximum(1.0 - alpha, TINY))
        - jnp.log(jnp.maximum(alpha, TINY))
        + jax.nn.logsumexp(rel, axis=-1, keepdims=True)
    )
    log_mask_ratio = jnp.where(_observed(proc, x_t), log_mask_ratio, 0.0)
    return jnp.concatenate([rel, log_mask_ratio], axis=-1)


def _normalized(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
    """The identity conversion: log-normalized logits."""
    del proc, x_t, t
    return jax.nn.log_softmax(logits, axis=-1)


def _from_model_score(to: Callable) -> Callable:
    """A conversion from a score network's K outputs: complete them to V log-ratios first."""

    def fn(proc: InterpolatingProcess, logits: Array, x_t: Array, t: Array) -> Array:
        return to(proc, model_score_to_ratios(proc, logits, x_t, t), x_t, t)

    return fn


# (what the logits mean, what is wanted) -> conversion(proc, logits, x_t, t). 'score' as the source
# is a score network's K outputs; 'score' as the target is V log-ratios.
CONVERSIONS: dict[tuple[str, str], Callable[..., Array]] = {
    ("denoiser", "denoiser"): _normalized,
    ("denoiser", "loo"): denoiser_to_loo,
    ("denoiser", "score"): denoiser_to_score,
    ("loo", "denoiser"): loo_to_denoiser,
    ("loo", "loo"): _normalized,
    ("loo", "score"): loo_to_score,
    ("score", "denoiser"): _from_model_score(score_to_denoiser),
    ("score", "loo"): _from_model_score(score_to_loo),
    ("score", "score"): model_score_to_ratios,
}


def convert(proc: InterpolatingProcess, src: str, dst: str, logits: Array, x_t: Array,
            t: Array) -> Array:
    """Logits meaning `src` converted to the representation `dst` (both in `NAMES`), exactly:

        denoiser <-> loo by (1), loo <-> score by (2), denoiser <-> score through loo;

    'score' as `src` is a score network's output `[..., L, K]` (completed to `[..., L, V]` by
    `model_score_to_ratios`), as `dst` the log-ratios `[..., L, V]`; the others are log-normalized
    `[..., L, K]`. `src == dst` log-normalizes (or completes the score). Where a conversion is
    undefined (module docstring) the documented value is returned.
    """
    if src not in NAMES:
        raise ValueError(f"config.model.parameterization={src!r} is not one of {list(NAMES)}")
    if dst not in NAMES:
        raise ValueError(f"the representation {dst!r} asked for is not one of {list(NAMES)}")
    return CONVERSIONS[(src, dst)](proc, logits, x_t, t)
