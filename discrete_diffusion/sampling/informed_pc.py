"""Informed predictor-corrector for uniform diffusion (rev_udm; uniform_duo_mdlm.md section 2.6).

Predictor: one ancestral step t -> s. Corrector (after every predictor step except the last):
`corrector_steps` Gibbs sweeps at time s. A sweep is one network call: the LOO posterior gives, for
every position at once, the exact single-site conditional of the marginal p_s,

    p_s(x^i = y | x^{-i}) = alpha_s rho(y | x^{-i}) + (1 - alpha_s) pi(y),                  (1)

then `sites_per_sweep` (k) positions are chosen and resampled from (1). Site rules
(`config.sampler.site_rule`), by Gumbel-top-k on score / `selection_tau`:
  * 'lowest_log_margin'   score = -(log p(current) - max_{y != current} log p(y)) (default);
  * 'lowest_current_prob' score = -log p(current);
  * 'random'              score = 0 (uniform sites).
With k = 1 and 'random', a sweep is a random-scan single-site Gibbs step: it leaves p_s invariant
exactly (given the exact LOO). Confidence rules and k > 1 trade that invariance for speed.
NFE = num_steps + corrector_steps (num_steps - 1); `steps_for_budget` inverts it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import InterpolatingProcess, per_token
from discrete_diffusion.sampling.ancestral import reverse_kernel, sample_from_probs
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

SITE_RULES = ("lowest_log_margin", "lowest_current_prob", "random")
DEFAULTS = {
    "bridge": "loo_plugin",
    "corrector_steps": 2,
    "sites_per_sweep": 12,
    "site_rule": "lowest_log_margin",
    "selection_tau": 1.0,
}


def single_site_conditionals(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x: Array, t: Array
) -> Array:
    """Equation (1) for every position, `[..., L, V]` probabilities."""
    rho = jnp.exp(params_lib.to_loo(proc, parameterization, logits, x, t))
    return proc.marginal_from_probs(rho, proc.alpha(per_token(t, x)))


def site_scores(cond: Array, x: Array, rule: str) -> Array:
    """Selection scores `[..., L]` (higher = more likely to be resampled)."""
    log_p = jnp.log(jnp.maximum(cond, 1e-30))
    current = jnp.take_along_axis(log_p, x[..., None], axis=-1)[..., 0]
    if rule == "lowest_log_margin":
        others = jnp.where(jax.nn.one_hot(x, cond.shape[-1]) > 0, -jnp.inf, log_p)
        return -(current - jnp.max(others, axis=-1))
    if rule == "lowest_current_prob":
        return -current
    if rule == "random":
        return jnp.zeros(x.shape)
    raise ValueError(f"config.sampler.site_rule={rule!r} is not one of {list(SITE_RULES)}")


def gibbs_sweep(key: Array, cond: Array, x: Array, free: Array, settings: dict) -> Array:
    """Resamples k chosen free sites of x from their conditionals `cond`."""
    k_sel, k_val = jax.random.split(key)
    scores = site_scores(cond, x, settings["site_rule"]) / settings["selection_tau"]
    scores = jnp.where(free, scores + jax.random.gumbel(k_sel, x.shape), -jnp.inf)
    k = min(int(settings["sites_per_sweep"]), x.shape[-1])
    kth = jax.lax.top_k(scores, k)[0][..., -1:]
    chosen = (scores >= kth) & jnp.isfinite(scores)
    return jnp.where(chosen, sample_from_probs(k_val, cond, settings["categorical"]), x).astype(jnp.int32)


def steps_for_budget(nfe: int, corrector_steps: int) -> int:
    """Predictor steps n such that n + corrector_steps (n - 1) <= nfe."""
    return max(1, (nfe + corrector_steps) // (1 + corrector_steps))


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """Predictor-corrector sampling; returns (x_0 int32 [N, L], NFE int32)."""
    settings = ctx.settings
    site_scores(jnp.ones((1, 1, 2)), jnp.zeros((1, 1), jnp.int32), settings["site_rule"])  # validate
    num_steps, c = settings["num_steps"], int(settings["corrector_steps"])
    if c < 0 or int(settings["sites_per_sweep"]) < 1:
        raise ValueError("config.sampler.corrector_steps must be >= 0 and sites_per_sweep >= 1")
    grid = time_grid(num_steps)
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    param = ctx.output_parameterization

    def corrector(x, s, key):
        def sweep(carry, k):
            x = carry
            logits = ctx.network(x, s)
            cond = single_site_conditionals(ctx.proc, param, logits, x, s)
            return ctx.apply_prompt(gibbs_sweep(k, cond, x, ctx.free(x), settings)), None

        x, _ = jax.lax.scan(sweep, x, jax.random.split(key, c))
        return x

    def body(carry, i):
        x_t, key = carry
        key, k_pred, k_corr = jax.random.split(key, 3)
        t, s = ctx.times(grid[i]), ctx.times(grid[i + 1])
        logits = ctx.network(x_t, t)
        x_s = ctx.apply_prompt(sample_from_probs(k_pred, reverse_kernel(
            ctx.proc, param, logits, x_t, t, s, settings["bridge"])))
        if c > 0:
            x_s = jax.lax.cond(i < num_steps - 1, lambda: corrector(x_s, s, k_corr), lambda: x_s)
        return (x_s, key), None

    (x, _), _ = jax.lax.scan(body, (x, key), jnp.arange(num_steps))
    return x, jnp.array(num_steps + c * (num_steps - 1), jnp.int32)
