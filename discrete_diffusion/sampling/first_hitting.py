"""First-hitting sampler (FHS) for masked diffusion (Zheng et al.; fhs_order_vadd_sedd.md 1.2).

In the exact reverse process every masked token unmasks at an independent time with
P(unmasked by s | masked at t) = (alpha_s - alpha_t)/(1 - alpha_t), the same for all masked
tokens and independent of the network. With n tokens masked at time t the next unmasking time is

    tau = alpha^{-1}( 1 - u^{1/n} (1 - alpha_t) ),   u ~ U(0, 1),                       (1)

the position is uniform among the n masked ones, and its value is drawn from mu_theta(. | x, tau).
This simulates the continuous-time reverse chain exactly (no time discretization) with exactly
one network call per token: NFE = number of masked tokens (L without a prompt). Each call asks
for the logits of the chosen position only (`Context.network_at`, `output_positions`).

`tokens_per_step = k > 1`: the next k event times are drawn from (1) without the network, k
distinct masked positions uniformly, and all k values from one network call at the first event
time. This treats the k tokens as conditionally independent, like any parallel step: approximate
(exact for k = 1). NFE = ceil(L / k).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from discrete_diffusion.sampling.categorical import categorical
from discrete_diffusion.sampling.context import Context

Array = jnp.ndarray

DEFAULTS = {"tokens_per_step": 1}


def next_hitting_time(key: Array, proc, t: Array, n: Array) -> Array:
    """Equation (1), per sample: t [N], n [N] masked counts (t unchanged where n = 0)."""
    u = jax.random.uniform(key, t.shape, minval=1e-12, maxval=1.0)
    alpha_t = proc.alpha(t)
    target = 1.0 - jnp.exp(jnp.log(u) / jnp.maximum(n, 1)) * (1.0 - alpha_t)
    tau = proc.schedule.inverse(target)
    return jnp.where(n > 0, jnp.clip(tau, 0.0, t), t)


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """Decodes all masked tokens; returns (x_0 int32 [N, L], NFE int32)."""
    proc = ctx.proc
    if proc.mask_id is None:
        raise ValueError(
            f"config.sampler.name='first_hitting' needs config.process.name='masked', got {proc.name!r}"
        )
    k = int(ctx.settings["tokens_per_step"])
    if k < 1:
        raise ValueError(f"config.sampler.tokens_per_step={k!r} must be >= 1")
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    num_events = math.ceil(ctx.seq_len / k)
    rows = jnp.arange(ctx.num_samples)[:, None]

    def body(carry, _):
        x, t, nfe, key = carry
        key, k_time, k_pos, k_val = jax.random.split(key, 4)
        masked = x == proc.mask_id  # [N, L]
        n = masked.sum(-1)
        # Positions: k distinct masked positions, uniformly (Gumbel-top-k over the masked set).
        scores = jnp.where(masked, jax.random.gumbel(k_pos, masked.shape), -jnp.inf)
        top, pos = jax.lax.top_k(scores, k)  # [N, k]
        chosen = jnp.isfinite(top)
        # Event times: the first one is where the network is evaluated; then k - 1 more.
        time_keys = jax.random.split(k_time, k)
        tau_first = next_hitting_time(time_keys[0], proc, t, n)
        tau = tau_first
        for j in range(1, k):
            tau = next_hitting_time(time_keys[j], proc, tau, n - j)
        any_left = n > 0
        # Logits only at the k chosen positions (`Context.network_at`: the network's final layer
        # runs on k positions when the model_fn accepts output_positions).
        logits_at = ctx.network_at(x, tau_first, pos)  # [N, k, K]
        nfe = nfe + jnp.any(any_left).astype(jnp.int32)
        current = jnp.take_along_axis(x, pos, axis=1)
        mu_at = ctx.convert(logits_at, current, tau_first, "denoiser")  # [N, k, K]
        values = categorical(k_val, mu_at, method=ctx.settings["categorical"])
        x = x.at[rows, pos].set(jnp.where(chosen, values, current))
        return (x, tau, nfe, key), None

    t0 = jnp.ones((ctx.num_samples,), jnp.float32)
    (x, _, nfe, _), _ = jax.lax.scan(body, (x, t0, jnp.array(0, jnp.int32), key), None, length=num_events)
    return ctx.apply_prompt(x), nfe
