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

from collections.abc import Callable

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import InterpolatingProcess
from discrete_diffusion.sampling.categorical import categorical, transform_logits

Array = jnp.ndarray
ModelFn = Callable[..., Array]

BRIDGES = ("loo_plugin", "denoiser_mixture", "denoiser_plugin")


def reverse_kernel(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array,
    s: Array, bridge: str = "loo_plugin",
) -> Array:
    """p_theta(x_s^i | x_t) as probabilities `[..., L, V]` from network logits `[..., L, K]`."""
    if bridge == "loo_plugin":
        loo = params_lib.to_loo(proc, parameterization, logits, x_t, t)
        return proc.bridge_plugin(x_t, t, s, jnp.exp(loo))
    if bridge == "denoiser_mixture":
        mu = params_lib.to_denoiser(proc, parameterization, logits, x_t, t)
        return proc.bridge_mixture(x_t, t, s, jnp.exp(mu))
    if bridge == "denoiser_plugin":
        mu = params_lib.to_denoiser(proc, parameterization, logits, x_t, t)
        return proc.bridge_plugin(x_t, t, s, jnp.exp(mu))
    raise ValueError(f"config.sampler.bridge={bridge!r} is not one of {list(BRIDGES)}")


def ancestral_step(
    key: Array, proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array,
    t: Array, s: Array, bridge: str = "loo_plugin",
) -> Array:
    """One exact-precision draw x_s ~ p_theta(. | x_t); int32 `[..., L]`."""
    probs = reverse_kernel(proc, parameterization, logits, x_t, t, s, bridge)
    log_probs = jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-38)), -jnp.inf)
    return categorical(key, log_probs)


def greedy_step(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array
) -> Array:
    """x_0 = argmax of the denoiser (carry-over positions keep their token)."""
    mu = params_lib.to_denoiser(proc, parameterization, logits, x_t, t)
    return jnp.where(proc.is_noisy(x_t), jnp.argmax(mu, -1), x_t).astype(jnp.int32)


def sample_ancestral(
    key: Array, model_fn: ModelFn, proc: InterpolatingProcess, *, num_samples: int,
    seq_len: int, num_steps: int, parameterization: str = "denoiser", bridge: str = "loo_plugin",
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, greedy_final: bool = False,
    reuse_output: bool = False,
) -> tuple[Array, Array]:
    """Runs `num_steps` ancestral steps from the prior; returns (x_0 int32 [N, L], NFE int32).

    `reuse_output` must only be set for masked diffusion with a model that ignores t.
    """
    if num_steps < 1:
        raise ValueError(f"config.sampler.num_steps={num_steps!r} must be >= 1")
    if bridge not in BRIDGES:
        raise ValueError(f"config.sampler.bridge={bridge!r} is not one of {list(BRIDGES)}")
    key, k_prior = jax.random.split(key)
    x = proc.sample_prior(k_prior, (num_samples, seq_len))
    grid = jnp.linspace(1.0, 0.0, num_steps + 1)

    def network(x_t: Array, t: Array) -> Array:
        logits = model_fn(x_t, jnp.full((num_samples,), t))
        return transform_logits(logits, temperature, top_k, top_p)

    def body(carry, i):
        x_t, cached, valid, nfe, key = carry
        key, k_step = jax.random.split(key)
        t, s = grid[i], grid[i + 1]
        if reuse_output:
            logits = jax.lax.cond(valid, lambda: cached, lambda: network(x_t, t))
            nfe = nfe + jnp.where(valid, 0, 1)
        else:
            logits = network(x_t, t)
            nfe = nfe + 1
        x_s = ancestral_step(k_step, proc, parameterization, logits, x_t, t, s, bridge)
        if greedy_final:
            x_s = jnp.where(i == num_steps - 1, greedy_step(proc, parameterization, logits, x_t, t), x_s)
        valid = jnp.all(x_s == x_t)
        return (x_s, logits, valid, nfe, key), None

    init_logits = jnp.zeros((num_samples, seq_len, proc.num_classes), jnp.float32)
    carry = (x, init_logits, jnp.array(False), jnp.array(0, jnp.int32), key)
    (x, _, _, nfe, _), _ = jax.lax.scan(body, carry, jnp.arange(num_steps))
    return x, nfe
