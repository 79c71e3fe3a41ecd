"""Ordered first-hitting sampler: pre-sampled per-position unmasking times, decoded in order.

Masked diffusion with a multivariate schedule alpha_{t,l} (Garg, Kohli & Sarawagi 2025,
Algorithm 1 + the FHS of Zheng et al.; fhs_order_vadd_sedd.md 1.2 and 2.2). In the exact
reverse process position l leaves the mask at an independent time T_l with

    P(T_l <= t) = 1 - alpha_{t,l},   i.e.   T_l = alpha_l^{-1}(1 - u_l),  u_l ~ U(0, 1),    (1)

(for alpha_{t,l} = 1 - t^{w_l}: T_l = u_l^(1/w_l), computed as log T_l = log(u_l) / w_l so that
tiny times keep their order). Positions are decoded in decreasing T_l (the first one decoded has
the largest T), one network call per token, at t = T_l, each value drawn from the denoiser
mu_theta(. | x, T_l) given the tokens decoded so far. Exact (no time discretisation) for an exact
denoiser; the decoding orders follow Plackett-Luce(w) for the polynomial schedule:
P(pi) = prod_i w_pi(i) / sum_{j >= i} w_pi(j) (larger w decoded earlier).

The schedule is the context's (`ctx.proc.schedule`): a per-position `schedules.PerTokenPolynomial`
with power `[L]` (the `learned_order` method passes its learned w through `sampling.generate(...,
schedule=...)`), or any univariate schedule of config.process, where (1) gives i.i.d. times and
the sampler has the law of 'first_hitting' with one token per step.
Prompted positions are placed first and not decoded. NFE = the number of steps with a position
left to decode in some row (L without a prompt). The paper's text writes t = alpha^{-1}(u) and
orders by increasing t in one place; this follows the derivation (decreasing transition time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from discrete_diffusion import schedules
from discrete_diffusion.sampling.categorical import categorical
from discrete_diffusion.sampling.context import Context

Array = jnp.ndarray

DEFAULTS: dict = {}
_TINY = 1e-30


def log_unmask_times(schedule, u: Array) -> Array:
    """log T `[N, L]` of equation (1) from uniforms u `[N, L]` in (0, 1]."""
    if isinstance(schedule, schedules.PerTokenPolynomial | schedules.Polynomial):
        return jnp.log(u) / schedule.power  # log u^(1/w), exact for tiny T
    return jnp.log(jnp.clip(schedule.inverse(1.0 - u), _TINY, 1.0))


def decode(key: Array, ctx: Context) -> tuple[Array, Array, Array]:
    """(x_0 int32 [N, L], NFE int32, order int32 [N, L]); order[:, 0] is decoded first."""
    proc = ctx.proc
    if proc.mask_id is None:
        raise ValueError("config.sampler.name='ordered_first_hitting' needs config.process.name="
                         f"'masked', got {proc.name!r}")
    power = getattr(proc.schedule, "power", None)
    if power is not None and jnp.ndim(power) >= 1 and jnp.shape(power)[-1] != ctx.seq_len:
        raise ValueError(f"the per-position schedule has {jnp.shape(power)[-1]} powers; cannot "
                         f"sample seq_len={ctx.seq_len} with 'ordered_first_hitting'")
    N, L = ctx.num_samples, ctx.seq_len
    rows = jnp.arange(N)
    k_t, k_v = jax.random.split(key)
    u = jax.random.uniform(k_t, (N, L), minval=1e-12, maxval=1.0)
    log_T = jnp.broadcast_to(log_unmask_times(proc.schedule, u), (N, L))
    given = jnp.zeros((N, L), bool) if ctx.prompt_mask is None else ctx.prompt_mask.astype(bool)
    log_T = jnp.where(given, 1.0, log_T)  # prompt positions first (not decoded)
    order = jnp.argsort(-log_T, axis=-1).astype(jnp.int32)
    x = ctx.initial_state(k_t)

    def body(carry, i):
        x, nfe = carry
        pos = order[:, i]
        need = ~given[rows, pos]
        t_i = jnp.exp(jnp.minimum(log_T[rows, pos], 0.0))

        def step(x):
            t = ctx.times(t_i)
            mu = ctx.convert(ctx.network(x, t), x, t, "denoiser")[rows, pos]  # [N, K]
            val = categorical(jax.random.fold_in(k_v, i), mu, method=ctx.settings["categorical"])
            hit = need[:, None] & (jnp.arange(L)[None] == pos[:, None])
            return jnp.where(hit, val[:, None], x).astype(jnp.int32)

        x = jax.lax.cond(jnp.any(need), step, lambda x: x, x)
        return (x, nfe + jnp.any(need).astype(jnp.int32)), None

    (x, nfe), _ = jax.lax.scan(body, (x, jnp.array(0, jnp.int32)), jnp.arange(L))
    return ctx.apply_prompt(x), nfe, order


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """Decodes every masked position in the order of its unmasking time; (x_0, NFE)."""
    x, nfe, _ = decode(key, ctx)
    return x, nfe
