"""Training objectives: pure per-token functions of (model outputs, x0, x_t, t).

Every function returns a `[..., L]` array; the continuous-time NELBO of a sequence is
E_{t ~ U[0,1]} E_{x_t ~ q_t(.|x_0)} [sum over positions], so the training loss is the mean over the
batch of the per-token sum. Notation: alpha = alpha_t, alpha' = d alpha_t/dt (<= 0), K classes,
z = x_t^i (current token), x = x_0^i (clean token), beta = -alpha'/alpha (forward jump rate).

Which objective consumes which representation (conversions in `parameterizations`):
  * masked NELBO and cross-entropies: the denoiser mu (for the masked process mu = LOO at masked
    positions);
  * uniform NELBO (UDLM and Duo forms): the plug-in bridge's input, the LOO posterior rho;
  * score entropy: score log-ratios.
`loss_per_token(proc, parameterization, name, logits, x0, x_t, t)` gives the 2x2 (and more) of
{denoiser, loo, score} network outputs x {elbo, denoising_ce, loo_ce, score_entropy} objectives.
The cross-entropy terms -log mu(x_0 | x_t) are `log_prob.log_softmax_at` (the gather of
log_softmax, equal bit for bit, with a backward pass that writes no scattered cotangent).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from discrete_diffusion import checks
from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.log_prob import log_softmax_at
from discrete_diffusion.processes import TINY, InterpolatingProcess, per_token

Array = jnp.ndarray

NAMES = ("elbo", "denoising_ce", "loo_ce", "score_entropy")


def _check(name: str, proc: InterpolatingProcess, logits: Array, x0: Array, x_t: Array, t: Array,
           states: bool = False, noise: Array | None = None) -> None:
    """Shapes and dtypes at trace time (`checks.check_loss_inputs`): logits over the K clean
    classes (`states`: over the process's V states, score entropy's log-ratios)."""
    width = proc.num_states if states else proc.num_classes
    what = (f"the process's states (num_states = {width})" if states
            else f"clean classes, config.process.num_classes = {width}")
    checks.check_loss_inputs(name, logits, x0, x_t, t, width, what, noise)


def _gather(logits: Array, index: Array) -> Array:
    return jnp.take_along_axis(logits, index[..., None], axis=-1)[..., 0]


def masked_nelbo(
    proc: InterpolatingProcess, denoiser_logits: Array, x0: Array, x_t: Array, t: Array
) -> Array:
    """MDLM/MD4 continuous-time NELBO per token:

        (-alpha'_t / (1 - alpha_t)) 1[x_t^i = mask] (-log mu_theta(x_0^i | x_t)).

    Zero-masking is structural (the network outputs K clean classes only); carry-over makes
    unmasked positions contribute 0. With alpha_t = 1 - t the weight is 1/t.
    """
    _check("masked_nelbo", proc, denoiser_logits, x0, x_t, t)
    tt = per_token(t, x0)
    weight = -proc.dalpha(tt) / jnp.maximum(1.0 - proc.alpha(tt), TINY)
    nll = -log_softmax_at(denoiser_logits, x0)
    return jnp.where(proc.is_noisy(x_t), weight * nll, 0.0)


def masked_nelbo_rates(
    denoiser_logits: Array, x0: Array, x_t: Array, mask_id: int, rate: Array
) -> Array:
    """Masked continuous-time NELBO per token with per-token (or per-value) rates, >= 0 in sum.

    `rate` r = -alpha'/(1 - alpha) (any positive factor, e.g. an importance weight 1/p(t), folded
    in) is either
      * `[..., L]`, a rate per token (schedules per position, Garg et al. 2025 eq. 8):

            r_l 1[x_t^l = mask] (-log mu(x_0^l | x_t)),

      * or `[..., L, K]`, a rate per clean value k (GenMD4, MD4 eq. 12; the forward process
        masks a token of value k at rate r_k):

            1[x_t^l = mask] ( r_{x_0^l} (-log mu(x_0^l | x_t) - 1) + sum_k r_k mu_k(x_t) ),

        the CTMC path NELBO: the jump term -log(model rate / true rate) = -log mu at the
        unmasking, plus the compensator sum_k r_k mu_k - r_{x_0} of the model's total unmasking
        rate. With r_k = r for every k it equals the first form (sum_k mu_k = 1).
    MD4's code writes the same integrand as (alpha'/(1-alpha))^T [x_0 - mu + x_0 x_0^T log mu].
    """
    log_mu = jax.nn.log_softmax(denoiser_logits, axis=-1)
    nll = -_gather(log_mu, x0)
    if rate.ndim == x0.ndim:
        per = rate * nll
    else:
        rate = jnp.broadcast_to(rate, log_mu.shape)
        per = _gather(rate, x0) * (nll - 1.0) + jnp.sum(rate * jnp.exp(log_mu), axis=-1)
    return jnp.where(x_t == mask_id, per, 0.0)


def _log_xbar_theta(alpha: Array, loo_logits: Array, k: int) -> Array:
    """log xbar_theta = log(K alpha rho + (1 - alpha)), `[..., L, K]`."""
    log_rho = jax.nn.log_softmax(loo_logits, axis=-1)
    return jnp.logaddexp(
        jnp.log(jnp.maximum(k * alpha, TINY))[..., None] + log_rho,
        jnp.log(jnp.maximum(1.0 - alpha, TINY))[..., None],
    )


def uniform_nelbo(
    proc: InterpolatingProcess, loo_logits: Array, x0: Array, x_t: Array, t: Array
) -> Array:
    """UDLM continuous-time NELBO per token (Schiff et al. eq. 49, written so that it is >= 0):

        (-alpha' / (K alpha)) [ K / xbar_theta(z) - K / xbar(z) - sum_j r_j log(s_j / r_j) ],

    xbar = K alpha onehot(x) + (1 - alpha) 1, xbar_theta = K alpha rho_theta + (1 - alpha) 1,
    r_j = xbar_j / xbar(z) (true ratios), s_j = xbar_theta_j / xbar_theta(z) (model ratios).
    This is the diffusion-weighted denoising score entropy of the uniform CTMC evaluated at the
    score implied by rho_theta; its population minimizer is the LOO posterior.
    """
    _check("uniform_nelbo", proc, loo_logits, x0, x_t, t)
    k = proc.num_classes
    alpha = proc.alpha(per_token(t, x0))
    coeff = -proc.dalpha(per_token(t, x0)) / jnp.maximum(k * alpha, TINY)
    log_xbt = _log_xbar_theta(alpha, loo_logits, k)
    log_xb = jnp.log(k * alpha[..., None] * jax.nn.one_hot(x0, k) + (1.0 - alpha[..., None]))
    log_xbt_z = _gather(log_xbt, x_t)
    log_xb_z = _gather(log_xb, x_t)
    r = jnp.exp(log_xb - log_xb_z[..., None])
    log_s_over_r = (log_xbt - log_xbt_z[..., None]) - (log_xb - log_xb_z[..., None])
    bracket = k * jnp.exp(-log_xbt_z) - k * jnp.exp(-log_xb_z) - jnp.sum(r * log_s_over_r, -1)
    return coeff * bracket


def uniform_nelbo_rb(
    proc: InterpolatingProcess, loo_logits: Array, x0: Array, x_t: Array, t: Array
) -> Array:
    """Duo's Rao-Blackwellized form of `uniform_nelbo` (Duo eq. 17), equal to it token by token:

        (-alpha'/(K alpha)) [ K/xbar_theta(z) - K/xbar(z)
            - c sum_j log(xbar_theta_j / xbar_theta(z))
            - K alpha/(1 - alpha) 1[z != x] log(xbar_theta(x) / xbar_theta(z))
            + ((K - 1) kappa 1[z = x] - (1/kappa) 1[z != x]) log kappa ],

    kappa = (1 - alpha) / (K alpha + 1 - alpha), c = kappa if z = x else 1. Only gathers at z and x
    and one row-sum of log xbar_theta: no K-wide true-ratio vector.
    """
    _check("uniform_nelbo_rb", proc, loo_logits, x0, x_t, t)
    k = proc.num_classes
    alpha = proc.alpha(per_token(t, x0))
    coeff = -proc.dalpha(per_token(t, x0)) / jnp.maximum(k * alpha, TINY)
    log_xbt = _log_xbar_theta(alpha, loo_logits, k)
    log_xbt_z = _gather(log_xbt, x_t)
    log_xbt_x = _gather(log_xbt, x0)
    same = x_t == x0
    kappa = jnp.maximum((1.0 - alpha) / (k * alpha + 1.0 - alpha), 1e-12)
    xbar_z = jnp.where(same, k * alpha + 1.0 - alpha, 1.0 - alpha)
    c = jnp.where(same, kappa, 1.0)
    bracket = (
        k * jnp.exp(-log_xbt_z)
        - k / jnp.maximum(xbar_z, TINY)
        - c * (jnp.sum(log_xbt, -1) - k * log_xbt_z)
        - jnp.where(same, 0.0, k * alpha / jnp.maximum(1.0 - alpha, TINY)) * (log_xbt_x - log_xbt_z)
        + jnp.where(same, (k - 1) * kappa, -1.0 / kappa) * jnp.log(kappa)
    )
    return coeff * bracket


def score_entropy(
    proc: InterpolatingProcess, log_ratios: Array, x0: Array, x_t: Array, t: Array
) -> Array:
    """SEDD diffusion-weighted denoising score entropy per token (an NELBO for any positive s):

        sum_{y != z} Q_t(y -> z) [ s(y) - r(y) log s(y) + r(y) (log r(y) - 1) ],

    r(y) = q_t(y | x) / q_t(z | x), s = exp(log_ratios) `[..., L, V]`, and the forward rate into z
    of an interpolating process is Q_t(y -> z) = beta pi(z) (beta = -alpha'/alpha): beta/K for the
    uniform process, beta into the mask state (and 0 into clean tokens) for the masked one.
    """
    _check("score_entropy", proc, log_ratios, x0, x_t, t, states=True)
    tt = per_token(t, x0)
    alpha = proc.alpha(tt)
    beta = -proc.dalpha(tt) / jnp.maximum(alpha, TINY)
    rate_in = beta * jnp.exp(jnp.take(proc.log_prior(), x_t))
    q = proc.marginal_probs(x0, tt)  # [..., L, V]
    r = q / jnp.maximum(_gather(q, x_t)[..., None], TINY)
    s = jnp.exp(log_ratios)
    terms = s - r * log_ratios + jax.scipy.special.xlogy(r, r) - r
    not_self = 1.0 - jax.nn.one_hot(x_t, proc.num_states)
    return rate_in * jnp.sum(not_self * terms, axis=-1)


def audm_nelbo(
    proc: InterpolatingProcess, denoiser_logits: Array, x0: Array, x_t: Array, noise: Array,
    t: Array,
) -> Array:
    """NELBO of the absorbing-state reformulation (AUDM) per token, r_t = -alpha'_t/(1 - alpha_t):

        r_t 1[x_t = u] [ (1 - p_theta(x_t | x_t, u)) - 1[x_0 != u] (1 + log p_theta(x_0 | x_t, u)) ],

    the CTMC NELBO of the u-conditioned absorbing chain: an absorbed token leaves u at rate r_t
    towards x_0; the model's rate towards v != u is r_t p_theta(v). Positions with x_t != u are
    clean (carry-over) and contribute 0.
    """
    _check("audm_nelbo", proc, denoiser_logits, x0, x_t, t, noise=noise)
    tt = per_token(t, x0)
    rate = -proc.dalpha(tt) / jnp.maximum(1.0 - proc.alpha(tt), TINY)
    log_p = jax.nn.log_softmax(denoiser_logits, axis=-1)
    p_stay = jnp.exp(_gather(log_p, x_t))
    jump = jnp.where(x0 != noise, 1.0 + _gather(log_p, x0), 0.0)
    return jnp.where(x_t == noise, rate * ((1.0 - p_stay) - jump), 0.0)


def denoising_ce(
    proc: InterpolatingProcess, denoiser_logits: Array, x0: Array, x_t: Array, t: Array
) -> Array:
    """-log mu_theta(x_0^i | x_t) at noisy positions (all positions for uniform, masked ones for
    masked). Unweighted; its population minimizer is the denoiser."""
    _check("denoising_ce", proc, denoiser_logits, x0, x_t, t)
    del t
    nll = -log_softmax_at(denoiser_logits, x0)
    return jnp.where(proc.is_noisy(x_t), nll, 0.0)


def loo_ce(
    proc: InterpolatingProcess, loo_logits: Array, x0: Array, x_t: Array, t: Array
) -> Array:
    """-log rho_theta(x_0^i | x_t) at noisy positions: cross-entropy of the LOO output itself.

    A trap worth knowing: over networks that see all of x_t (including x_t^i) the population
    minimizer of this loss is the *denoiser*, not the LOO posterior, because rho_theta may use x_t^i.
    It targets the LOO posterior only for networks blind to x_t^i. Provided for ablations; to train
    a LOO network use 'elbo' (minimized by the LOO) or 'denoising_ce' (through the conversion).
    """
    return denoising_ce(proc, loo_logits, x0, x_t, t)


def _denoiser_logits(proc: InterpolatingProcess, parameterization: str, logits: Array,
                     x_t: Array, t: Array) -> Array:
    """Logits of the denoiser, for a loss that log-normalizes them itself (`log_softmax_at`): a
    denoiser network's own logits as they are (the identity conversion would log-normalize them
    once more, a [..., K] pass and its backward pass for nothing; the loss differs by float32
    rounding), any other parameterization converted (`parameterizations.convert`)."""
    if parameterization == "denoiser":
        return logits
    return params_lib.convert(proc, parameterization, "denoiser", logits, x_t, t)


def nelbo_per_token(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x0: Array, x_t: Array,
    t: Array, noise: Array | None = None,
) -> Array:
    """The process's continuous-time NELBO for any network parameterization (via conversions).

    `noise`: the per-token noise ids u of the 'uniform_absorbing' process (required there; its
    network must be a denoiser p(x_0 | x_t, u)).
    """
    _check("nelbo_per_token", proc, logits, x0, x_t, t, noise=noise)
    if proc.name == "uniform_absorbing":
        _check_absorbing(parameterization, noise)
        return audm_nelbo(proc, logits, x0, x_t, noise, t)
    if proc.mask_id is not None:
        return masked_nelbo(proc, _denoiser_logits(proc, parameterization, logits, x_t, t),
                            x0, x_t, t)
    loo = params_lib.convert(proc, parameterization, "loo", logits, x_t, t)
    return uniform_nelbo_rb(proc, loo, x0, x_t, t)


def _check_absorbing(parameterization: str, noise: Array | None) -> None:
    if parameterization != "denoiser":
        raise ValueError(
            f"config.model.parameterization={parameterization!r}: the 'uniform_absorbing' process "
            "needs 'denoiser' (the network predicts p(x_0 | x_t, u))"
        )
    if noise is None:
        raise ValueError("the 'uniform_absorbing' process needs the noise ids u (noise=...)")


def loss_per_token(
    proc: InterpolatingProcess, parameterization: str, name: str, logits: Array, x0: Array,
    x_t: Array, t: Array, noise: Array | None = None,
) -> Array:
    """Objective `name` (config.training.loss) for a network of `parameterization`.

    'elbo': the NELBO (`nelbo_per_token`); 'denoising_ce': cross-entropy of the implied denoiser;
    'loo_ce': cross-entropy of the implied LOO posterior; 'score_entropy': SEDD's objective on the
    implied (or, for a score network, the raw) score.
    """
    _check("loss_per_token", proc, logits, x0, x_t, t, noise=noise)
    if name == "elbo":
        return nelbo_per_token(proc, parameterization, logits, x0, x_t, t, noise)
    if proc.name == "uniform_absorbing":
        _check_absorbing(parameterization, noise)
        if name != "denoising_ce":
            raise ValueError(
                f"config.training.loss={name!r} is not one of ['elbo', 'denoising_ce'] for "
                "config.process.name='uniform_absorbing'"
            )
        return jnp.where(x_t == noise, -log_softmax_at(logits, x0), 0.0)
    if name == "denoising_ce":
        return denoising_ce(proc, _denoiser_logits(proc, parameterization, logits, x_t, t),
                            x0, x_t, t)
    if name == "loo_ce":
        loo = params_lib.convert(proc, parameterization, "loo", logits, x_t, t)
        return loo_ce(proc, loo, x0, x_t, t)
    if name == "score_entropy":
        ratios = params_lib.convert(proc, parameterization, "score", logits, x_t, t)
        return score_entropy(proc, ratios, x0, x_t, t)
    raise ValueError(f"config.training.loss={name!r} is not one of {list(NAMES)}")
