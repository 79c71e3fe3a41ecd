"""Informed predictor-corrector for uniform diffusion (rev_udm; uniform_duo_mdlm.md section 2.6).

Predictor: one ancestral step t -> s (`ancestral.reverse_kernel` with `config.sampler.bridge`, drawn
with `config.sampler.categorical`); with `greedy_final` the last step (to t = 0) takes the argmax
of the denoiser converted from the network output (`ancestral.greedy_step`). Corrector (after
every predictor step except the last): `corrector_steps` sweeps at time s. The LOO posterior gives,
for every position at once, the exact single-site conditional of the marginal p_s,

    p_s(x^i = y | x^{-i}) = alpha_s rho(y | x^{-i}) + (1 - alpha_s) pi(y),                  (1)

and a sweep resamples chosen positions from (1). Uniform process only: for the masked process the
LOO posterior is not identified at unmasked positions (`sampling.PROCESS_SAMPLERS` refuses it).

Site rules (`config.sampler.site_rule`) score every position (higher = more likely resampled):
  * 'lowest_log_margin'   score = -(log p(current) - max_{y != current} log p(y)) (default);
  * 'lowest_current_prob' score = -log p(current);
  * 'random'              score = 0 (uniform sites).

Gibbs sweeps (`mh_correct=False`, rev_udm's corrector): one network call, then the
`sites_per_sweep` (k, default 12) positions of the Gumbel-top-k of score / `selection_tau` are
resampled from (1). With k = 1 and 'random' a sweep is a random-scan Gibbs step and leaves p_s
invariant exactly (given the exact LOO). A confidence rule makes the site choice depend on the
state, and then the sweep no longer leaves p_s invariant (with the exact LOO posterior on the
3-token toy, 'lowest_log_margin' with k = 1 samples at TV 0.21 against a floor of 0.01); k > 1
resamples several sites from conditionals of the same state, which is approximate too.

Metropolis-Hastings sweeps (`mh_correct=True`; this library's, none of the reference
implementations has one): one site i is drawn with probability

    w_i(x) = softmax_{j free}(score_j(x) / selection_tau)_i                                 (2)

(the Gumbel-max of the scores), a value y from (1), and the move to x' = (x with x^i <- y) is
accepted with probability

    A(x -> x') = min(1, w_i(x') / w_i(x)).                                                  (3)

This is Metropolis-Hastings with the proposal q(x' | x) = w_i(x) p_s(y | x^{-i}): since
x'^{-i} = x^{-i}, p_s(x') / p_s(x) = p_s(y | x^{-i}) / p_s(x^i | x^{-i}), so
p_s(x') q(x | x') / (p_s(x) q(x' | x)) = w_i(x') / w_i(x), and the sweep leaves p_s invariant
for any site rule (exact given the exact LOO posterior, whose (1) does not depend on x^i). w(x')
needs the conditionals at x', i.e. one network call at the proposal; they are also the next
sweep's conditionals when the move is accepted, so a corrector phase costs corrector_steps + 1
calls (the + 1: the conditionals at the predictor's output). `sites_per_sweep` must be 1 (its
default under `mh_correct`).

NFE = num_steps + (corrector_steps + mh_correct) (num_steps - 1) (`nfe`); `steps_for_budget`
inverts it (the frontier compares informed PC with the other samplers at equal NFE).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import InterpolatingProcess, per_token
from discrete_diffusion.sampling.ancestral import greedy_step, reverse_kernel, sample_from_probs
from discrete_diffusion.sampling.categorical import categorical
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

SITE_RULES = ("lowest_log_margin", "lowest_current_prob", "random")
DEFAULTS = {
    "bridge": "loo_plugin",
    "corrector_steps": 2,
    "sites_per_sweep": None,  # None: 12, or 1 with mh_correct
    "site_rule": "lowest_log_margin",
    "selection_tau": 1.0,
    "mh_correct": False,
    "greedy_final": False,
}
TYPES = {"sites_per_sweep": int}  # the type of each field whose default is None
GIBBS_SITES_PER_SWEEP = 12


def single_site_conditionals(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x: Array, t: Array
) -> Array:
    """Equation (1) for every position, `[..., L, V]` probabilities."""
    rho = jnp.exp(params_lib.convert(proc, parameterization, "loo", logits, x, t))
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


def site_log_probs(cond: Array, x: Array, free: Array, rule: str, tau: float) -> Array:
    """log w_i(x) of equation (2), `[..., L]` (-inf at positions that are not free)."""
    scores = jnp.where(free, site_scores(cond, x, rule) / tau, -jnp.inf)
    return jax.nn.log_softmax(scores, axis=-1)


def gibbs_sweep(key: Array, cond: Array, x: Array, free: Array, settings: dict) -> Array:
    """Resamples the k top free sites of score / tau + Gumbel noise from their conditionals `cond`."""
    k_sel, k_val = jax.random.split(key)
    scores = site_scores(cond, x, settings["site_rule"]) / settings["selection_tau"]
    scores = jnp.where(free, scores + jax.random.gumbel(k_sel, x.shape), -jnp.inf)
    k = min(int(settings["sites_per_sweep"]), x.shape[-1])
    kth = jax.lax.top_k(scores, k)[0][..., -1:]
    chosen = (scores >= kth) & jnp.isfinite(scores)
    return jnp.where(chosen, sample_from_probs(k_val, cond, settings["categorical"]), x).astype(jnp.int32)


def mh_propose(key: Array, cond: Array, log_w: Array, x: Array, method: str = "exact"
               ) -> tuple[Array, Array]:
    """One site i ~ w(x) (equation (2), `log_w` `[N, L]`) and a value from (1) there: returns
    (x' int32 [N, L], i int32 [N])."""
    k_site, k_val = jax.random.split(key)
    site = categorical(k_site, log_w, method=method)
    rows = jnp.arange(x.shape[0])
    value = sample_from_probs(k_val, cond[rows, site], method)
    return x.at[rows, site].set(value).astype(jnp.int32), site


def mh_log_acceptance(log_w: Array, log_w_proposal: Array, site: Array) -> Array:
    """log A of equation (3), `[N]`: min(0, log w_i(x') - log w_i(x)) at the proposed site i."""
    rows = jnp.arange(site.shape[0])
    return jnp.minimum(0.0, log_w_proposal[rows, site] - log_w[rows, site])


def mh_sweeps(key: Array, x: Array, conditionals: Callable[[Array], Array], free: Array,
              settings: dict, num_sweeps: int) -> Array:
    """`num_sweeps` Metropolis-Hastings sweeps (equations (2) and (3)) from x `[N, L]`;
    `conditionals(x)` gives (1) for every position (one network call). Positions that are not
    `free` never move. Calls `conditionals` num_sweeps + 1 times."""
    rule, tau, method = settings["site_rule"], settings["selection_tau"], settings["categorical"]
    any_free = jnp.any(free, axis=-1)
    cond = conditionals(x)
    log_w = site_log_probs(cond, x, free, rule, tau)

    def sweep(carry, k):
        x, cond, log_w = carry
        k_prop, k_acc = jax.random.split(k)
        x_new, site = mh_propose(k_prop, cond, log_w, x, method)
        cond_new = conditionals(x_new)
        log_w_new = site_log_probs(cond_new, x_new, free, rule, tau)
        log_u = jnp.log(jax.random.uniform(k_acc, site.shape, minval=1e-38))
        accept = (log_u < mh_log_acceptance(log_w, log_w_new, site)) & any_free
        x = jnp.where(accept[:, None], x_new, x)
        cond = jnp.where(accept[:, None, None], cond_new, cond)
        log_w = jnp.where(accept[:, None], log_w_new, log_w)
        return (x, cond, log_w), None

    (x, _, _), _ = jax.lax.scan(sweep, (x, cond, log_w), jax.random.split(key, num_sweeps))
    return x


def nfe(num_steps: int, corrector_steps: int, mh_correct: bool = False) -> int:
    """Network calls of a run: num_steps + (corrector_steps + mh_correct) (num_steps - 1)."""
    per_phase = corrector_steps + int(bool(mh_correct)) if corrector_steps > 0 else 0
    return num_steps + per_phase * (num_steps - 1)


def steps_for_budget(budget: int, corrector_steps: int, mh_correct: bool = False) -> int:
    """The most predictor steps n >= 1 with nfe(n, corrector_steps, mh_correct) <= budget."""
    per_phase = corrector_steps + int(bool(mh_correct)) if corrector_steps > 0 else 0
    return max(1, (budget + per_phase) // (1 + per_phase))


def resolved(settings: dict) -> dict:
    """The settings with `sites_per_sweep` resolved and every corrector field validated."""
    settings = dict(settings)
    site_scores(jnp.ones((1, 1, 2)), jnp.zeros((1, 1), jnp.int32), settings["site_rule"])  # validate
    mh = settings["mh_correct"]
    if mh not in (True, False):
        raise ValueError(f"config.sampler.mh_correct={mh!r} must be True or False")
    if settings["greedy_final"] not in (True, False):
        raise ValueError(f"config.sampler.greedy_final={settings['greedy_final']!r} must be True or False")
    k = settings["sites_per_sweep"]
    if k is None:
        k = 1 if mh else GIBBS_SITES_PER_SWEEP
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"config.sampler.sites_per_sweep={k!r} must be an int >= 1")
    if mh and k != 1:
        raise ValueError(f"config.sampler.sites_per_sweep={k!r} must be 1 with "
                         "config.sampler.mh_correct=True (one site per Metropolis-Hastings sweep)")
    c = settings["corrector_steps"]
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ValueError(f"config.sampler.corrector_steps={c!r} must be an int >= 0")
    tau = settings["selection_tau"]
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not tau > 0:
        raise ValueError(f"config.sampler.selection_tau={tau!r} must be a number > 0")
    settings["sites_per_sweep"] = k
    return settings


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """Predictor-corrector sampling; returns (x_0 int32 [N, L], NFE int32)."""
    settings = resolved(ctx.settings)
    num_steps, c, mh = settings["num_steps"], settings["corrector_steps"], settings["mh_correct"]
    method = settings["categorical"]
    grid = time_grid(num_steps)
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    param = ctx.output_parameterization

    def conditionals(x: Array, s: Array) -> Array:
        # Under guidance, the guided conditionals (sampling/guidance.py: classifier guidance tilts (1)
        # by p_phi(y | x with x^i <- v, s)^w, the conditionals of p_s(x) p_phi(y | x, s)^w).
        return ctx.step_kernel(lambda lg: single_site_conditionals(ctx.proc, param, lg, x, s),
                               ctx.network(x, s), x, s, s)

    def gibbs_corrector(x, s, key):
        def sweep(x, k):
            return ctx.apply_prompt(gibbs_sweep(k, conditionals(x, s), x, ctx.free(x), settings)), None

        x, _ = jax.lax.scan(sweep, x, jax.random.split(key, c))
        return x

    def mh_corrector(x, s, key):
        return mh_sweeps(key, x, lambda z: conditionals(z, s), ctx.free(x), settings, c)

    corrector = mh_corrector if mh else gibbs_corrector

    def body(carry, i):
        x_t, key = carry
        key, k_pred, k_corr = jax.random.split(key, 3)
        t, s = ctx.times(grid[i]), ctx.times(grid[i + 1])
        logits = ctx.network(x_t, t)
        probs = ctx.step_kernel(lambda lg: reverse_kernel(ctx.proc, param, lg, x_t, t, s, settings["bridge"]),
                                logits, x_t, t, s)
        x_s = sample_from_probs(k_pred, probs, method)
        if settings["greedy_final"]:
            x_s = jnp.where(i == num_steps - 1, greedy_step(ctx.proc, param, logits, x_t, t), x_s)
        x_s = ctx.apply_prompt(x_s)
        if c > 0:
            x_s = jax.lax.cond(i < num_steps - 1, lambda: corrector(x_s, s, k_corr), lambda: x_s)
        return (x_s, key), None

    (x, _), _ = jax.lax.scan(body, (x, key), jnp.arange(num_steps))
    return x, jnp.array(nfe(num_steps, c, mh), jnp.int32)
