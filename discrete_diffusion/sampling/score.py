"""SEDD's score samplers (fhs_order_vadd_sedd.md section 4.3) for the interpolating processes.

Both samplers read the network through the concrete score, the single-site log-ratios

    log s(y) = log p_t(x_t with x^i <- y) / p_t(x_t),   `[..., L, V]`,   s(x_t^i) = 1,

obtained from any parameterization by `parameterizations.convert(..., 'score', ...)`.

Rates. The marginal (1) of `processes` solves d q_t / dt = -beta_t (q_t - pi) with
beta_t = -alpha'_t / alpha_t, i.e. the forward generator of every position is

    Q_t(y -> z) = beta_t pi(z)   (z != y),        Q_t(y -> y) = -beta_t (1 - pi(y)).

Time reversal gives the reverse rate of a single-site move x -> y (y != x) at position i:

    R_t(x -> y) = Q_t(y -> x) p_t(y) / p_t(x) = beta_t pi(x) s(y).                        (1)

For the masked process only masked tokens move (pi(c) = 0 for a clean c) and, with
s(y) = alpha_t / (1 - alpha_t) mu(y), R_t(m -> y) = -alpha'_t / (1 - alpha_t) mu(y).

Euler (`score_euler`): one step t -> s = t - dt draws every position independently from

    p(x_s^i = y | x_t) = dt R_t(x_t^i -> y)  (y != x_t^i),   1 - dt sum_{y != x} R_t(x -> y)  (y = x).

When dt R is large the stay probability is negative (always at t = 1 for the uniform process
with alpha_1 = 0, where beta_t is infinite): it is clipped at 0 and the row renormalized, i.e. the
step then surely leaves x_t^i, to y with probability proportional to R_t(x_t^i -> y). Rates are
computed in log space (log beta + log pi(x) + log s(y), alpha floored at 1e-30) so that they stay
finite.

Tweedie tau-leaping (`score_tweedie`, SEDD's "analytic" predictor, paper Thm 4.2). The forward
transition from s to t is T(y -> z) = a 1[z = y] + (1 - a) pi(z) with a = alpha_t / alpha_s, whose
inverse is T^{-1} = (1/a) I - ((1 - a)/a) 1 pi^T. Given x_t^{-i}, x_t^i is x_s^i pushed through T,
so with c(y) = p_t(x^i = y | x_t^{-i}) = softmax(log s)(y) (the single-site conditional):

    p(x_s^i = y | x_t) = T(y -> x_t^i) [c T^{-1}](y) / c(x_t^i)
                       ∝ (a 1[y = x_t^i] + (1 - a) pi(x_t^i)) (c(y) - (1 - a) pi(y)).        (2)

This is exact per position for the exact score (SEDD's [exp(-dsigma Q) s]_y exp(dsigma Q)(x_t^i, y)
in closed form). Since c = alpha_t rho + (1 - alpha_t) pi with rho the LOO posterior
p(x_0^i | x_t^{-i}), c T^{-1} = alpha_s rho + (1 - alpha_s) pi, so (2) is the plug-in bridge at the
LOO posterior (`processes.bridge_plugin`):
  * uniform process, exact score: (2) is the exact reverse kernel p(x_s^i | x_t);
  * masked process, x_t^i = m: (2) gives (alpha_s - alpha_t)/(1 - alpha_t) mu(y) for y clean and
    (1 - alpha_s)/(1 - alpha_t) for the mask: MDLM's ancestral step (`ancestral.reverse_kernel`);
    unmasked tokens stay.
An inexact score can make c(y) < (1 - a) pi(y); such entries are clipped at 0 (a row with no mass
left keeps x_t^i). For the masked process the mask entry c(m) - (1 - a) is computed as
a - sum_{z != m} c(z), which avoids float32 cancellation when alpha_t is small.

Both samplers use the uniform grid t_max = t_0 > ... > t_N = 0 from x_{t_max} ~ pi. The last step
t_{N-1} -> 0 is a Tweedie step with alpha_s = 1 (SEDD's final denoising: it removes all noise, and
all masks); for 'score_euler' the other N - 1 steps are Euler steps. NFE = num_steps (one network
call per step).

Why t_max < 1 (`config.sampler.t_max`, default 1 - 1e-4). Where alpha_t = 0 (t = 1 for the
'linear' and 'cosine' schedules) x_t is independent of the data and the score carries no
information: s = 1 for the uniform process (T is not invertible, a = 0, and (2) returns pi), and
for the masked process every clean ratio is 0. SEDD likewise never evaluates sigma = infinity
(alpha_1 = eps > 0). Starting from pi at t_max (where the true marginal differs from pi
by at most alpha(t_max) ~ 1e-4 in total variation per position) keeps every step informative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import NEG_INF, TINY, InterpolatingProcess, per_token
from discrete_diffusion.sampling.ancestral import sample_from_probs
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

# exp() argument cap for rates in the Euler step (dt R <= e^80 keeps float32 finite).
_MAX_LOG_RATE = 80.0


def _carry_over(proc: InterpolatingProcess, x_t: Array, probs: Array) -> Array:
    """Tokens that reveal x_0 (unmasked tokens of the masked process) stay as they are."""
    return jnp.where(proc.is_noisy(x_t)[..., None], probs, jax.nn.one_hot(x_t, proc.num_states))


def _normalize_or_stay(x_t: Array, weights: Array) -> Array:
    """weights / sum(weights), or onehot(x_t) for a row with no mass."""
    total = weights.sum(-1, keepdims=True)
    stay = jax.nn.one_hot(x_t, weights.shape[-1])
    return jnp.where(total > 0, weights / jnp.maximum(total, TINY), stay)


def log_reverse_rates(proc: InterpolatingProcess, log_ratios: Array, x_t: Array, t: Array) -> Array:
    """log R_t(x_t^i -> y), equation (1): log beta_t + log pi(x_t^i) + log s(y), `[..., L, V]`.

    beta_t = -alpha'_t / alpha_t (alpha floored at 1e-30). The diagonal (y = x_t^i) is NEG_INF.
    """
    tt = per_token(t, x_t)
    log_beta = jnp.log(jnp.maximum(-proc.dalpha(tt), TINY)) - jnp.log(jnp.maximum(proc.alpha(tt), TINY))
    log_pi_x = jnp.take(proc.log_prior(), x_t)
    log_rate = (log_beta + log_pi_x)[..., None] + log_ratios
    diagonal = jax.nn.one_hot(x_t, proc.num_states) > 0
    return jnp.where(diagonal, NEG_INF, jnp.maximum(log_rate, NEG_INF))


def euler_kernel(
    proc: InterpolatingProcess, log_ratios: Array, x_t: Array, t: Array, s: Array
) -> Array:
    """Euler step p(x_s^i = y | x_t) = 1[y = x] + (t - s) R_t(x -> y), probabilities `[..., L, V]`.

    The off-diagonal entries are (t - s) R_t(x_t^i -> y) (equation (1)); the stay probability
    1 - sum_{y != x} (t - s) R_t(x_t^i -> y) is clipped at 0 and the row renormalized.
    """
    dt = per_token(t, x_t) - per_token(s, x_t)
    log_jump = jnp.log(jnp.maximum(dt, TINY))[..., None] + log_reverse_rates(proc, log_ratios, x_t, t)
    jump = jnp.exp(jnp.minimum(log_jump, _MAX_LOG_RATE))
    stay = jnp.maximum(1.0 - jump.sum(-1, keepdims=True), 0.0)
    weights = jump + stay * jax.nn.one_hot(x_t, proc.num_states)
    return _carry_over(proc, x_t, _normalize_or_stay(x_t, weights))


def tweedie_kernel(
    proc: InterpolatingProcess, log_ratios: Array, x_t: Array, t: Array, s: Array
) -> Array:
    """Tweedie tau-leaping, equation (2), probabilities `[..., L, V]`:

        p(x_s^i = y | x_t) ∝ (a 1[y = x_t^i] + (1 - a) pi(x_t^i)) max(c(y) - (1 - a) pi(y), 0),

    a = alpha_t / alpha_s, c = softmax(log s). Exact (per position) for the exact score.
    """
    alpha_t = proc.alpha(per_token(t, x_t))
    alpha_s = proc.alpha(per_token(s, x_t))
    a = (alpha_t / jnp.maximum(alpha_s, TINY))[..., None]
    one_minus_a = ((alpha_s - alpha_t) / jnp.maximum(alpha_s, TINY))[..., None]
    pi = jnp.exp(proc.log_prior())
    c = jax.nn.softmax(log_ratios, axis=-1)
    unnoised = c - one_minus_a * pi  # ∝ [c T^{-1}](y)
    if proc.mask_id is not None:
        # pi = onehot(m): c(m) - (1 - a) = a - sum_{z != m} c(z), without cancelling against 1.
        clean_mass = jnp.sum(jnp.delete(c, proc.mask_id, axis=-1), axis=-1)
        unnoised = unnoised.at[..., proc.mask_id].set(a[..., 0] - clean_mass)
    unnoised = jnp.maximum(unnoised, 0.0)
    pi_xt = jnp.take(pi, x_t)[..., None]
    transition = a * jax.nn.one_hot(x_t, proc.num_states) + one_minus_a * pi_xt  # T(y -> x_t^i)
    return _carry_over(proc, x_t, _normalize_or_stay(x_t, transition * unnoised))


KERNELS: dict[str, Callable[..., Array]] = {"euler": euler_kernel, "tweedie": tweedie_kernel}


def score_kernel(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array,
    s: Array, method: str = "tweedie",
) -> Array:
    """One step's kernel `[..., L, V]` from network logits: `KERNELS[method]` on their score."""
    if method not in KERNELS:
        raise ValueError(f"score sampler method={method!r} is not one of {list(KERNELS)}")
    log_ratios = params_lib.convert(proc, parameterization, "score", logits, x_t, t)
    return KERNELS[method](proc, log_ratios, x_t, t, s)


def _run(key: Array, ctx: Context, method: str) -> tuple[Array, Array]:
    """num_steps steps of `method` on the uniform grid, the last one a Tweedie step to t = 0."""
    num_steps, t_max = ctx.settings["num_steps"], ctx.settings["t_max"]
    if not 0.0 < t_max <= 1.0:
        raise ValueError(f"config.sampler.t_max={t_max!r} must be in (0, 1]")
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    grid = t_max * time_grid(num_steps)

    def body(carry, i):
        x_t, key = carry
        key, k_step = jax.random.split(key)
        t, s = ctx.times(grid[i]), ctx.times(grid[i + 1])

        def kernel(logits: Array) -> Array:
            log_ratios = ctx.convert(logits, x_t, t, "score")
            probs = tweedie_kernel(ctx.proc, log_ratios, x_t, t, s)
            if method == "euler":
                euler = euler_kernel(ctx.proc, log_ratios, x_t, t, s)
                probs = jnp.where(i == num_steps - 1, probs, euler)
            return probs

        probs = ctx.step_kernel(kernel, ctx.network(x_t, t), x_t, t, s)
        x_s = ctx.apply_prompt(sample_from_probs(k_step, probs, ctx.settings["categorical"]))
        return (x_s, key), None

    (x, _), _ = jax.lax.scan(body, (x, key), jnp.arange(num_steps))
    return x, jnp.array(num_steps, jnp.int32)


def run_euler(key: Array, ctx: Context) -> tuple[Array, Array]:
    """'score_euler': Euler steps, then a final Tweedie denoising step; returns (x_0, NFE)."""
    return _run(key, ctx, "euler")


def run_tweedie(key: Array, ctx: Context) -> tuple[Array, Array]:
    """'score_tweedie': Tweedie tau-leaping steps (the last to t = 0); returns (x_0, NFE)."""
    return _run(key, ctx, "tweedie")


class Sampler(NamedTuple):
    """A registry entry: its own config.sampler fields (`DEFAULTS`) and `run(key, ctx)`."""

    DEFAULTS: dict[str, Any]
    run: Callable[[Array, Context], tuple[Array, Array]]


DEFAULTS: dict[str, Any] = {"t_max": 1.0 - 1e-4}
EULER = Sampler(DEFAULTS=DEFAULTS, run=run_euler)
TWEEDIE = Sampler(DEFAULTS=DEFAULTS, run=run_tweedie)
