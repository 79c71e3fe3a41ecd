"""Samplers of the absorbing-state reformulation of uniform diffusion ('uniform_absorbing').

State: (x_t, u) with u the per-token noise ids; "masked" positions are those with x_t = u. The
network is the denoiser p_theta(x_0 | x_t, u) (`model_fn(x_t, t, noise=u)`).

AUDM step (MDLM-like, no remasking), exact for an exact denoiser: with c = (alpha_s - alpha_t)/(1 - alpha_t),

    masked i:    x_s^i ~ c p_theta(. | x_t, u) + (1 - c) onehot(u^i);   unmasked i: x_s^i = x_t^i.   (1)

ReAUDM step (natural remasking): x0_hat ~ p_theta(. | x_t, u) (unmasked positions: x_t), then
x_s ~ q_uniform(x_s | x_t, x0_hat) (the uniform process's exact bridge), then u_s resampled from its
exact conditional p(u | x0_hat, x_s) (`UniformAbsorbingProcess.resample_noise`): a clean-looking
token becomes masked again when u_s = x_s, as the uniform diffusion law demands.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from discrete_diffusion.processes import TINY, per_token
from discrete_diffusion.sampling.ancestral import sample_from_probs
from discrete_diffusion.sampling.categorical import categorical
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

DEFAULTS: dict = {}


def audm_kernel(proc, mu: Array, x_t: Array, u: Array, t: Array, s: Array) -> Array:
    """Equation (1) as probabilities `[..., L, K]` (mu: denoiser probabilities)."""
    a_t = proc.alpha(per_token(t, x_t))[..., None]
    a_s = proc.alpha(per_token(s, x_t))[..., None]
    c = (a_s - a_t) / jnp.maximum(1.0 - a_t, TINY)
    k = proc.num_classes
    masked_row = c * mu + (1.0 - c) * jax.nn.one_hot(u, k)
    return jnp.where((x_t == u)[..., None], masked_row, jax.nn.one_hot(x_t, k))


def _prior(ctx: Context, key: Array) -> tuple[Array, Array]:
    u = ctx.proc.sample_prior(key, (ctx.num_samples, ctx.seq_len))
    return _prompt(ctx, u, u)


def _prompt(ctx: Context, x: Array, u: Array) -> tuple[Array, Array]:
    """Prompt positions: x = given token, u != x (so they are clean)."""
    x = ctx.apply_prompt(x)
    if ctx.prompt_mask is not None:
        u = jnp.where(ctx.prompt_mask, (x + 1) % ctx.proc.num_classes, u)
    return x, u


def _check(ctx: Context) -> None:
    if ctx.proc.name != "uniform_absorbing":
        raise ValueError(
            f"config.sampler.name={ctx.settings['name']!r} needs "
            f"config.process.name='uniform_absorbing', got {ctx.proc.name!r}"
        )
    if ctx.output_parameterization != "denoiser":
        raise ValueError(
            "config.model.parameterization must be 'denoiser' for 'uniform_absorbing' "
            "(and config.sampler.temperature_on 'output' or 'denoiser')"
        )


def _run(key: Array, ctx: Context, remask: bool) -> tuple[Array, Array]:
    _check(ctx)
    grid = time_grid(ctx.settings["num_steps"])
    key, k_prior = jax.random.split(key)
    x, u = _prior(ctx, k_prior)

    def body(carry, i):
        x_t, u, key = carry
        key, k1, k2, k3 = jax.random.split(key, 4)
        t, s = grid[i], grid[i + 1]
        mu = jnp.exp(jax.nn.log_softmax(ctx.network(x_t, jnp.full((ctx.num_samples,), t), noise=u), -1))
        if not remask:
            x_s = sample_from_probs(k1, audm_kernel(ctx.proc, mu, x_t, u, t, s), ctx.settings["categorical"])
            u_s = u
        else:
            drawn = categorical(k1, jnp.log(jnp.maximum(mu, 1e-38)), method=ctx.settings["categorical"])
            x0_hat = jnp.where(x_t == u, drawn, x_t)
            bridge = ctx.proc.bridge_plugin(x_t, t, s, jax.nn.one_hot(x0_hat, ctx.proc.num_classes))
            x_s = sample_from_probs(k2, bridge, ctx.settings["categorical"])
            u_s = ctx.proc.resample_noise(k3, x0_hat, x_s, s)
        x_s, u_s = _prompt(ctx, x_s, u_s)
        return (x_s, u_s, key), None

    (x, _, _), _ = jax.lax.scan(body, (x, u, key), jnp.arange(ctx.settings["num_steps"]))
    return x, jnp.array(ctx.settings["num_steps"], jnp.int32)


def run_audm(key: Array, ctx: Context) -> tuple[Array, Array]:
    """AUDM ancestral sampling; returns (x_0 int32 [N, L], NFE)."""
    return _run(key, ctx, remask=False)


def run_reaudm(key: Array, ctx: Context) -> tuple[Array, Array]:
    """ReAUDM sampling with natural remasking; returns (x_0 int32 [N, L], NFE)."""
    return _run(key, ctx, remask=True)
