"""Ancestral sampling: x_s ~ p_theta(x_s | x_t) on a uniform time grid 1 = t_0 > ... > t_N = 0.

One step t -> s draws every position independently from a reverse kernel built from the network
output (after temperature / top-k / nucleus on that output):
  * 'loo_plugin'       plug-in bridge at the LOO posterior rho_theta (exact for an exact model);
  * 'denoiser_mixture' mixture of bridges over the denoiser mu_theta (exact for an exact model);
  * 'denoiser_plugin'  plug-in bridge at the denoiser: biased for uniform diffusion at any step
                       count (uniform_duo_mdlm.md section 2.3); kept for ablations only.
For the masked process the three coincide (MDLM's step: a masked token stays masked with
probability (1 - alpha_s)/(1 - alpha_t), else takes a value from mu_theta; unmasked tokens stay).

Output reuse (MDLM's "ddpm_cache"): for the masked process with a network that is not
time-conditioned, the output depends on x_t only, so it is recomputed only when a step changed
x_t; NFE is then at most the number of distinct states visited (<= L + 1).
`greedy_final`: the last step (to t = 0) takes the argmax of the denoiser instead of a draw.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import InterpolatingProcess
from discrete_diffusion.sampling.categorical import categorical
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

BRIDGES = ("loo_plugin", "denoiser_mixture", "denoiser_plugin")
DEFAULTS = {"bridge": "loo_plugin", "greedy_final": False, "reuse_output": True}


def reverse_kernel(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array,
    s: Array, bridge: str = "loo_plugin",
) -> Array:
    """p_theta(x_s^i | x_t) as probabilities `[..., L, V]` from network logits `[..., L, K]`."""
    if bridge == "loo_plugin":
        loo = params_lib.convert(proc, parameterization, "loo", logits, x_t, t)
        return proc.bridge_plugin(x_t, t, s, jnp.exp(loo))
    if bridge == "denoiser_mixture":
        mu = params_lib.convert(proc, parameterization, "denoiser", logits, x_t, t)
        return proc.bridge_mixture(x_t, t, s, jnp.exp(mu))
    if bridge == "denoiser_plugin":
        mu = params_lib.convert(proc, parameterization, "denoiser", logits, x_t, t)
        return proc.bridge_plugin(x_t, t, s, jnp.exp(mu))
    raise ValueError(f"config.sampler.bridge={bridge!r} is not one of {list(BRIDGES)}")


def sample_from_probs(key: Array, probs: Array, method: str = "exact") -> Array:
    """Draw from probabilities `[..., V]` (zero entries are never drawn); `method` as in
    `categorical.categorical` ('exact' unless reproducing the float32 Gumbel bias)."""
    log_probs = jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-38)), -jnp.inf)
    return categorical(key, log_probs, method=method)


def greedy_step(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array
) -> Array:
    """x_0 = argmax of the denoiser (carry-over positions keep their token)."""
    mu = params_lib.convert(proc, parameterization, "denoiser", logits, x_t, t)
    return jnp.where(proc.is_noisy(x_t), jnp.argmax(mu, -1), x_t).astype(jnp.int32)


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """`num_steps` ancestral steps from the prior; returns (x_0 int32 [N, L], NFE int32)."""
    settings = ctx.settings  # validated by sampling.sampler_settings
    num_steps, bridge = settings["num_steps"], settings["bridge"]
    reuse = (bool(settings["reuse_output"]) and ctx.proc.mask_id is not None and not ctx.time_conditioning
             and ctx.guide is None)
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    grid = time_grid(num_steps)

    def body(carry, i):
        x_t, cached, valid, nfe, key = carry
        key, k_step = jax.random.split(key)
        t, s = ctx.times(grid[i]), ctx.times(grid[i + 1])
        if reuse:
            logits = jax.lax.cond(valid, lambda: cached, lambda: ctx.network(x_t, t))
            nfe = nfe + jnp.where(valid, 0, 1)
        else:
            logits = ctx.network(x_t, t)
            nfe = nfe + 1
        probs = ctx.step_kernel(lambda lg: reverse_kernel(
            ctx.proc, ctx.output_parameterization, lg, x_t, t, s, bridge), logits, x_t, t, s)
        x_s = sample_from_probs(k_step, probs, settings["categorical"])
        if settings["greedy_final"]:
            greedy = greedy_step(ctx.proc, ctx.output_parameterization, logits, x_t, t)
            x_s = jnp.where(i == num_steps - 1, greedy, x_s)
        x_s = ctx.apply_prompt(x_s)
        valid = jnp.all(x_s == x_t)
        return (x_s, logits, valid, nfe, key), None

    init_logits = jnp.zeros((ctx.num_samples, ctx.seq_len, ctx.proc.num_classes), jnp.float32)
    carry = (x, init_logits, jnp.array(False), jnp.array(0, jnp.int32), key)
    (x, _, _, nfe, _), _ = jax.lax.scan(body, carry, jnp.arange(num_steps))
    return x, nfe
