"""Psi-samplers (Duo chapter II) for any prior, with ReMDM's remasking schedules as kappa schedules.

One step t -> s mixes the ancestral kernel with a re-noising of the predicted clean data:

    Psi(z_s | z_t) = kappa q(z_s | z_t, x_hat)
                     + (1 - kappa) [alpha_s q(z_0 | z_t, x_hat) + (1 - alpha_s) pi],       (1)

where q(z_s | z_t, x_hat) is the reverse kernel of `ancestral.reverse_kernel` and q(z_0 | z_t, x_hat)
the same kernel to time 0 (the denoiser; carry-over positions stay). Given the true x_0 both terms
map q_t(. | x_0) to q_s(. | x_0), so (1) preserves the marginals for any kappa in [0, 1]; with a
network the factorized prediction makes kappa < 1 approximate. kappa = 1 is ancestral sampling.

ReMDM (masked prior) with remasking probability sigma is (1) with kappa = 1 - sigma/(1 - alpha_s)
(`remdm_kernel` states ReMDM's own formula; a test checks the equality; see `kappa_from_sigma`
for kappa < 0). Schedules
(`config.sampler.kappa_schedule`):
  * 'constant'       kappa = config.sampler.kappa;
  * 'phases'         kappa_high / kappa_middle / kappa_low on the first high_frac, the next
                     middle_frac and the remaining fraction of the steps;
  * 'remdm_cap'      sigma = min(eta, sigma_max), sigma_max = min(1, (1 - alpha_s)/alpha_t);
  * 'remdm_rescale'  sigma = eta sigma_max;
  * 'remdm_loop'     ReMDM-loop (equation (2) below): alpha rises 0 -> alpha_on, is held at
                     alpha_on with sigma = eta (pure correction at fixed noise, s = t), then
                     rises alpha_on -> 1; kappa = 1 outside the hold;
  * 'remdm_conf'     ReMDM-conf (masked only): per position sigma^i = eta_conf^i sigma_max with
                     eta_conf = softmax over the unmasked positions of -psi^i, psi^i the denoiser's
                     probability of token i when it was unmasked (masked positions: sigma = 0).

ReMDM-loop (Wang et al. 2025, section 4 and remdm/diffusion.py 'remdm-loop'). With u = 1 - j/n
the step grid (j = 0..n, the fraction of the steps still to go), t_on > t_off fractions of that
grid and alpha_on the hold level (ReMDM's defaults t_on = 0.55, t_off = 0.05, alpha_on = 0.9;
Duo II's loop recipe 'linear-constant-linear-0.9-inv' with high_frac 0.45 / middle_frac 0.5 is the
same hold level and phases):

    alpha(u) = alpha_on (1 - u) / (1 - t_on)           u >= t_on            (MDLM, kappa = 1)
             = alpha_on                                 t_off <= u <= t_on   (ReMDM, sigma = eta)
             = 1 - (1 - alpha_on) u / t_off             u <= t_off           (MDLM, kappa = 1)      (2)

The phase boundaries are rounded to the nearest step (head round((1 - t_on) n) steps, hold
round((t_on - t_off) n) steps, as Duo II's code does with its fractions); ReMDM's code instead
switches phase at the first grid time <= t_on, which differs by at most one step. The network
and the bridges read the process's own time, t = schedule.inverse(alpha(u)) (clipped to [0, 1]),
so (2) fixes the alpha path for any schedule; ReMDM prescribes alpha directly (for the 'linear'
schedule, alpha = 1 - t, it is also linear in t, as Duo II's time profile is for every schedule).
During the hold, s = t and the step is (1) with kappa = 1 - eta/(1 - alpha_on) (kappa_from_sigma).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp

from discrete_diffusion.processes import TINY, InterpolatingProcess, per_token
from discrete_diffusion.sampling.ancestral import reverse_kernel, sample_from_probs
from discrete_diffusion.sampling.context import Context

Array = jnp.ndarray

SCHEDULES = ("constant", "phases", "remdm_cap", "remdm_rescale", "remdm_loop", "remdm_conf")
DEFAULTS = {
    "bridge": "loo_plugin",
    "kappa_schedule": "constant",
    "kappa": 1.0,
    "kappa_high": 1.0,
    "kappa_middle": 0.9,
    "kappa_low": 1.0,
    "high_frac": 0.2,
    "middle_frac": 0.6,
    "eta": 0.02,
    "t_on": 0.55,  # remdm_loop: grid fraction where the hold starts (ReMDM's t_on)
    "t_off": 0.05,  # remdm_loop: grid fraction where the hold ends (ReMDM's t_off)
    "alpha_on": 0.9,  # remdm_loop: the hold level, in alpha (ReMDM's alpha_on; Duo II's 0.9-inv)
}


def psi_kernel(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array,
    s: Array, kappa: Array, bridge: str = "loo_plugin",
) -> Array:
    """Equation (1) as probabilities `[..., L, V]`; kappa broadcastable to `x_t.shape`."""
    q_s = reverse_kernel(proc, parameterization, logits, x_t, t, s, bridge)
    q_0 = reverse_kernel(proc, parameterization, logits, x_t, t, jnp.zeros_like(jnp.asarray(s)), bridge)
    alpha_s = proc.alpha(per_token(s, x_t))[..., None]
    renoised = alpha_s * q_0 + (1.0 - alpha_s) * jnp.exp(proc.log_prior())
    kappa = jnp.asarray(kappa)[..., None]
    return kappa * q_s + (1.0 - kappa) * renoised


def remdm_kernel(
    proc: InterpolatingProcess, mu: Array, x_t: Array, t: Array, s: Array, sigma: Array
) -> Array:
    """ReMDM's step for masked diffusion (denoiser probabilities mu `[..., L, K]`):

        z_t != m:  (1 - sigma) onehot(z_t) + sigma onehot(m)
        z_t  = m:  (alpha_s - (1 - sigma) alpha_t)/(1 - alpha_t) mu
                   + (1 - alpha_s - sigma alpha_t)/(1 - alpha_t) onehot(m)
    """
    a_t = proc.alpha(per_token(t, x_t))[..., None]
    a_s = proc.alpha(per_token(s, x_t))[..., None]
    sigma = jnp.asarray(sigma)[..., None]
    mask = jax.nn.one_hot(proc.mask_id, proc.num_states)
    mu_v = jnp.pad(mu, [(0, 0)] * (mu.ndim - 1) + [(0, 1)])
    denom = jnp.maximum(1.0 - a_t, TINY)
    masked_row = (a_s - (1 - sigma) * a_t) / denom * mu_v + (1 - a_s - sigma * a_t) / denom * mask
    clean_row = (1 - sigma) * jax.nn.one_hot(x_t, proc.num_states) + sigma * mask
    return jnp.where(proc.is_noisy(x_t)[..., None], masked_row, clean_row)


def sigma_max(proc: InterpolatingProcess, t: Array, s: Array) -> Array:
    """The largest remasking probability ReMDM allows: min(1, (1 - alpha_s)/alpha_t)."""
    return jnp.minimum(1.0, (1.0 - proc.alpha(s)) / jnp.maximum(proc.alpha(t), TINY))


def kappa_from_sigma(proc: InterpolatingProcess, t: Array, s: Array, sigma: Array) -> Array:
    """kappa = 1 - sigma / (1 - alpha_s) with sigma clipped to [0, sigma_max(t, s)].

    For the masked process kappa may be negative (down to 1 - sigma_max/(1 - alpha_s)): (1) is
    still a distribution there and equals ReMDM's step for every allowed sigma (Duo's code clips
    kappa at 0, which silently caps sigma at 1 - alpha_s). For other priors kappa is clipped to
    [0, 1], where (1) is a mixture of two kernels.
    """
    sigma = jnp.clip(sigma, 0.0, sigma_max(proc, t, s))
    kappa = 1.0 - sigma / jnp.maximum(1.0 - proc.alpha(s), TINY)
    return kappa if proc.mask_id is not None else jnp.clip(kappa, 0.0, 1.0)


def loop_alphas(num_steps: int, t_on: float, t_off: float, alpha_on: float) -> tuple[Array, int, int]:
    """ReMDM-loop's alpha on the step grid, equation (2): (alpha `[num_steps + 1]`, n_head, n_hold).

    alpha[0] = 0, alpha[n_head : n_head + n_hold + 1] = alpha_on, alpha[num_steps] = 1.
    """
    if not 0.0 <= t_off <= t_on <= 1.0:
        raise ValueError(f"config.sampler.t_off={t_off!r} and config.sampler.t_on={t_on!r} must satisfy "
                         "0 <= t_off <= t_on <= 1 (fractions of the step grid)")
    if not 0.0 < alpha_on < 1.0:
        raise ValueError(f"config.sampler.alpha_on={alpha_on!r} must be in (0, 1)")
    n_head = int(round((1.0 - t_on) * num_steps))
    n_hold = min(int(round((t_on - t_off) * num_steps)), num_steps - n_head)
    n_tail = num_steps - n_head - n_hold
    head = jnp.linspace(0.0, alpha_on, n_head + 1)
    hold = jnp.full((n_hold,), alpha_on)
    tail = jnp.linspace(alpha_on, 1.0, n_tail + 1)[1:]
    return jnp.concatenate([head, hold, tail]), n_head, n_hold


def _per_position(proc: InterpolatingProcess) -> bool:
    """Whether the schedule has one alpha per position (power `[L]`, learned orders)."""
    power = getattr(proc.schedule, "power", None)
    return power is not None and jnp.ndim(power) >= 1


def schedule(proc: InterpolatingProcess, settings: dict) -> tuple[Array, Array, Array]:
    """The (t, s, kappa) of every step: t, s `[num_steps]`; kappa `[num_steps]`, or
    `[num_steps, L]` for 'remdm_cap' / 'remdm_rescale' with a per-position schedule (sigma_max
    and kappa_from_sigma then read alpha_{t,l} per position)."""
    n = settings["num_steps"]
    name = settings["kappa_schedule"]
    if name not in SCHEDULES:
        raise ValueError(f"config.sampler.kappa_schedule={name!r} is not one of {list(SCHEDULES)}")
    step = jnp.arange(n)
    per_position = _per_position(proc)
    if name == "remdm_loop" and per_position:
        raise ValueError("config.sampler.kappa_schedule='remdm_loop' prescribes one alpha path for "
                         "every position; with a per-position schedule use one of "
                         f"{[x for x in SCHEDULES if x != 'remdm_loop']}")
    if name == "remdm_loop":
        alphas, n_head, n_hold = loop_alphas(n, settings["t_on"], settings["t_off"], settings["alpha_on"])
        grid = jnp.clip(proc.schedule.inverse(alphas), 0.0, 1.0)
        grid = grid.at[0].set(1.0).at[-1].set(0.0)  # exact ends, whatever the schedule's inverse
        t, s = grid[:-1], grid[1:]
        in_loop = (step >= n_head) & (step < n_head + n_hold)
        # During the loop s = t: sigma = eta remasks, kappa from sigma at alpha_s = alpha_on.
        kappa = jnp.where(in_loop, kappa_from_sigma(proc, t, s, settings["eta"]), 1.0)
        return t, s, kappa
    n_high = int(round(settings["high_frac"] * n))
    n_mid = int(round(settings["middle_frac"] * n))
    if not 0 <= n_high + n_mid <= n:
        raise ValueError("config.sampler.high_frac + config.sampler.middle_frac must be <= 1")
    grid = jnp.linspace(1.0, 0.0, n + 1)
    t, s = grid[:-1], grid[1:]
    if name == "constant":
        kappa = jnp.full((n,), settings["kappa"])
    elif name == "phases":
        kappa = jnp.where(step < n_high, settings["kappa_high"],
                          jnp.where(step < n_high + n_mid, settings["kappa_middle"], settings["kappa_low"]))
    elif name == "remdm_conf":  # per-position kappa, computed during sampling (`conf_kappa`)
        kappa = jnp.ones((n,))
    else:
        if per_position:  # alpha_{t,l}: kappa per (step, position)
            t, s = t[:, None], s[:, None]
        if name == "remdm_cap":
            kappa = kappa_from_sigma(proc, t, s, jnp.minimum(settings["eta"], sigma_max(proc, t, s)))
        else:  # remdm_rescale
            kappa = kappa_from_sigma(proc, t, s, settings["eta"] * sigma_max(proc, t, s))
        if per_position:
            t, s = t[:, 0], s[:, 0]
    return t, s, kappa


def conf_kappa(
    proc: InterpolatingProcess, x_t: Array, confidence: Array, t: Array, s: Array
) -> Array:
    """ReMDM-conf's per-position kappa `[N, L]` from the unmasking confidences psi `[N, L]`."""
    unmasked = ~proc.is_noisy(x_t)
    eta = jax.nn.softmax(jnp.where(unmasked, -confidence, -jnp.inf), axis=-1)
    eta = jnp.where(unmasked, eta, 0.0)  # all-masked rows: no remasking
    sigma = eta * sigma_max(proc, t[..., None], s[..., None])  # [N, 1], or [N, L] per position
    return kappa_from_sigma(proc, t[..., None], s[..., None], sigma)


def step_inputs(model_fn: Callable[..., Array], step: Array) -> dict[str, Array]:
    """{'step': step} when `model_fn`'s signature names the keyword `step` (int32 scalar, the
    index of the sampler step: a latent-variable network such as VADD's draws a fresh latent per
    step from it, Algorithm 2, where 'remdm_loop''s hold phase repeats t), else {} (any other
    model_fn(x_t, t) is called as before)."""
    try:
        takes_step = "step" in inspect.signature(model_fn).parameters
    except (TypeError, ValueError):  # no signature (some builtins)
        takes_step = False
    return {"step": step} if takes_step else {}


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """Psi-sampling from the prior; returns (x_0 int32 [N, L], NFE int32)."""
    t_grid, s_grid, kappas = schedule(ctx.proc, ctx.settings)
    by_confidence = ctx.settings["kappa_schedule"] == "remdm_conf"
    if by_confidence and ctx.proc.mask_id is None:
        raise ValueError("config.sampler.kappa_schedule='remdm_conf' needs config.process.name='masked'")
    param = ctx.output_parameterization
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    confidence = jnp.ones(x.shape, jnp.float32)  # prompt tokens count as fully confident

    def body(carry, inputs):
        x_t, confidence, key = carry
        t_i, s_i, kappa, step = inputs
        key, k_step = jax.random.split(key)
        t, s = ctx.times(t_i), ctx.times(s_i)
        logits = ctx.network(x_t, t, **step_inputs(ctx.model_fn, step))
        if by_confidence:
            n = x_t.shape[0]
            kappa = conf_kappa(ctx.proc, x_t, confidence, jnp.full((n,), t_i), jnp.full((n,), s_i))
        bridge = ctx.settings["bridge"]
        probs = ctx.step_kernel(lambda lg: psi_kernel(ctx.proc, param, lg, x_t, t, s, kappa, bridge),
                                logits, x_t, t, s)
        x_s = ctx.apply_prompt(sample_from_probs(k_step, probs, ctx.settings["categorical"]))
        if by_confidence:  # psi of a newly unmasked token: the denoiser's probability of it
            mu = jnp.exp(ctx.convert(logits, x_t, t, "denoiser"))
            k = ctx.proc.num_classes
            p_new = jnp.take_along_axis(mu, jnp.minimum(x_s, k - 1)[..., None], axis=-1)[..., 0]
            newly = ctx.proc.is_noisy(x_t) & ~ctx.proc.is_noisy(x_s)
            confidence = jnp.where(newly, p_new, confidence)
        return (x_s, confidence, key), None

    steps = jnp.arange(len(t_grid), dtype=jnp.int32)
    (x, _, _), _ = jax.lax.scan(body, (x, confidence, key), (t_grid, s_grid, kappas, steps))
    return x, jnp.array(len(t_grid), jnp.int32)
