"""Ancestral sampling: x_s ~ p_theta(x_s | x_t) on a uniform time grid 1 = t_0 > ... > t_N = 0.

One step t -> s draws every position independently from a reverse kernel built from the network
output (after temperature / top-k / nucleus on that output):
  * 'loo_plugin'       plug-in bridge at the LOO posterior rho_theta (exact for an exact model);
  * 'denoiser_mixture' mixture of bridges over the denoiser mu_theta (exact for an exact model);
  * 'denoiser_plugin'  plug-in bridge at the denoiser: biased for uniform diffusion at any step
                       count (uniform_duo_mdlm.md section 2.3); kept for ablations only.
For the masked process the three coincide (MDLM's step: a masked token stays masked with
probability (1 - alpha_s)/(1 - alpha_t), else takes a value from mu_theta; unmasked tokens stay).

Masked process (unguided): unmask first, then draw only there (`run_masked`). The step above
is, per masked position independently,

    unmask ~ Bernoulli(p),  p = (alpha_s - alpha_t) / (1 - alpha_t);   if unmask: x_s ~ mu_theta(x_t, t)

(the bridge's mass on "stay masked" is (1 - alpha_s)/(1 - alpha_t); the rest is p mu_theta), so
the sampler draws the Bernoulli variables first, with a 64-bit uniform (exact to float32's relative
precision of p at every scale), and then asks the network for logits only at the positions that
unmask (`Context.network_at`: with a model_fn that accepts `output_positions` the final layer
runs on those positions only) and draws the K-way categorical there. The law of x_s given x_t is
the one of the dense step; a step where no position of the batch unmasks needs no network call
at all (for any network, time-conditioned or not: nothing is drawn), so NFE = the number of steps
in which some sequence of the batch unmasks a token (<= min(num_steps, L) at batch 1).
The positions are passed as `[N, P]` with P = `unmask_capacity(L, num_steps)` slots (a few times
the mean number of unmaskings per step); a step in which some sequence unmasks more than P
tokens (e.g. the last step to t = 0, which unmasks everything) computes the full logits instead.
This branch is chosen per step from the draws, so the law is the same either way.

Output reuse (`reuse_output`, MDLM's "ddpm_cache") is what the masked path above does for every
network: the network is called only when some position changes. It is per batch: a batched call
cannot skip the sequences that do not change, so in a batch the saving is the steps in which no
sequence changes (most steps at batch 1 when num_steps >> L; few at batch 4 and steps = L).
Skipping sequences one by one is a batch-1 feature: sample with num_samples = 1 (or vmap over
keys, which turns the conditional call back into a batched one). For the other processes (and
under guidance) the dense step below is used; there reuse applies to a masked process with a
network that is not time-conditioned (the old rule), and is off otherwise.
Greedy tail (`greedy_final` = True; `greedy_form` says which):
  * 'last_step' (ours)  the last step t = 1/n -> 0 takes the argmax of the denoiser mu_theta
                        (converted from the network output; carry-over positions keep their
                        token) instead of a draw: NFE unchanged.
  * 'duo'  (Duo's `sampling.noise_removal=greedy`, duo/trainer_base.py generate_samples, the
                        Greedy-tail numbers of Duo's Tables 6-7) the n steps run on the grid
                        1 -> DUO_T_EPS = 1e-5 (Duo's `linspace(1, 1e-5, steps + 1)`), then one
                        extra network call at t = 1e-5 and x_0 = argmax of the network's output in
                        the LOO parameterization (`duo_greedy_tail`): NFE + 1.
  The two differ for uniform diffusion: the denoiser is mu_k ∝ rho_k (1 + 1[k = x_t] K alpha /
  (1 - alpha)) (uniform_duo_mdlm.md), so at t = 1/n it adds log(1 + K alpha/(1 - alpha)) (12.8
  nats at K = 50257, t = 1/8) to the current token, which 'last_step' then almost always keeps;
  Duo's argmax of rho ignores x_t^i. For the masked process the LOO posterior at a masked position
  is the denoiser, and unmasked positions keep their token in both forms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import TINY, InterpolatingProcess, per_token
from discrete_diffusion.sampling.categorical import _u64_to_float, categorical, categorical_probs
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

BRIDGES = ("loo_plugin", "denoiser_mixture", "denoiser_plugin")
GREEDY_FORMS = ("last_step", "duo")
DUO_T_EPS = 1e-5  # Duo's generate_samples(eps=1e-5): the grid's last time and the greedy call's t
DEFAULTS = {"bridge": "loo_plugin", "greedy_final": False, "greedy_form": "last_step",
            "reuse_output": True}


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
    return categorical_probs(key, probs, method=method)


def greedy_step(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array
) -> Array:
    """x_0 = argmax of the denoiser (carry-over positions keep their token)."""
    mu = params_lib.convert(proc, parameterization, "denoiser", logits, x_t, t)
    return jnp.where(proc.is_noisy(x_t), jnp.argmax(mu, -1), x_t).astype(jnp.int32)


def duo_greedy_tail(
    proc: InterpolatingProcess, parameterization: str, logits: Array, x_t: Array, t: Array
) -> Array:
    """Duo's greedy tail: x_0^i = argmax_k rho_theta(k | x_t)^i, the argmax of the network output
    in the LOO parameterization (Duo's raw output), at every position of a uniform process; for
    the masked process at the masked positions (where rho = mu), unmasked positions keep x_t."""
    loo = params_lib.convert(proc, parameterization, "loo", logits, x_t, t)
    x_0 = jnp.argmax(loo, -1)
    if proc.mask_id is not None:
        x_0 = jnp.where(proc.is_noisy(x_t), x_0, x_t)
    return x_0.astype(jnp.int32)


def duo_tail(ctx: Context) -> bool:
    """Whether the run ends with Duo's greedy tail (`greedy_final` and `greedy_form` = 'duo');
    ValueError naming the field for a form not in GREEDY_FORMS."""
    form = ctx.settings.get("greedy_form", "last_step")
    if form not in GREEDY_FORMS:
        raise ValueError(f"config.sampler.greedy_form={form!r} is not one of {list(GREEDY_FORMS)}")
    return bool(ctx.settings["greedy_final"]) and form == "duo"


def sampling_grid(ctx: Context) -> Array:
    """1 = t_0 > ... > t_n: to 0, or to DUO_T_EPS before Duo's greedy tail."""
    n = ctx.settings["num_steps"]
    return jnp.linspace(1.0, DUO_T_EPS, n + 1) if duo_tail(ctx) else time_grid(n)


def finish(ctx: Context, x: Array, nfe: Array) -> tuple[Array, Array]:
    """(x, nfe), or with Duo's greedy tail (x_0 = `duo_greedy_tail` at t = DUO_T_EPS, nfe + 1)."""
    if not duo_tail(ctx):
        return x, nfe
    t = ctx.times(DUO_T_EPS)
    x_0 = duo_greedy_tail(ctx.proc, ctx.output_parameterization, ctx.network(x, t), x, t)
    return ctx.apply_prompt(x_0), nfe + 1


def run(key: Array, ctx: Context) -> tuple[Array, Array]:
    """`num_steps` ancestral steps from the prior; returns (x_0 int32 [N, L], NFE int32).

    The masked process without guidance takes `run_masked` (same law, work only where tokens
    unmask); every other case the dense step `run_dense`. Then Duo's greedy tail if asked
    (`finish`)."""
    if ctx.proc.mask_id is not None and ctx.guide is None:
        return finish(ctx, *run_masked(key, ctx))
    return finish(ctx, *run_dense(key, ctx))


def unmask_probability(proc: InterpolatingProcess, x_t: Array, t: Array, s: Array) -> Array:
    """p = (alpha_s - alpha_t) / (1 - alpha_t) per position `[N, L]` (alpha per token)."""
    alpha_t = proc.alpha(per_token(t, x_t))
    alpha_s = proc.alpha(per_token(s, x_t))
    p = (alpha_s - alpha_t) / jnp.maximum(1.0 - alpha_t, TINY)
    return jnp.broadcast_to(jnp.clip(p, 0.0, 1.0), x_t.shape)


def bernoulli64(key: Array, p: Array) -> Array:
    """1[U < p] with U = (n + 1/2) 2^-64 from 64 random bits: P = p to float32's relative precision
    for any p (a float32 uniform has a 2^-23 grid, so p ~ 1e-8 would be drawn at rate 0 or 1e-7)."""
    bits = jax.random.bits(key, (2,) + p.shape, dtype=jnp.uint32)
    return _u64_to_float(bits[0], bits[1]) < p


def unmask_capacity(seq_len: int, num_steps: int) -> int:
    """P, the position slots of a sparse step: 4x the mean number of unmaskings per step
    (L / num_steps), at least 8, a power of two, at most L."""
    mean = -(-seq_len // num_steps)
    return min(seq_len, max(8, 1 << (4 * mean - 1).bit_length()))


def run_masked(key: Array, ctx: Context, capacity: int | None = None) -> tuple[Array, Array]:
    """The masked step as unmask-then-draw (module docstring); (x_0 int32 [N, L], NFE int32).

    `capacity`: P (default `unmask_capacity`); a test sets it low to exercise both branches."""
    settings = ctx.settings
    num_steps, proc = settings["num_steps"], ctx.proc
    num_samples, seq_len = ctx.num_samples, ctx.seq_len
    cap = min(seq_len, capacity or unmask_capacity(seq_len, num_steps))
    sparse = cap < seq_len and not ctx.per_position_schedule
    rows = jnp.arange(num_samples)[:, None]
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    grid = sampling_grid(ctx)
    last_step_greedy = bool(settings["greedy_final"]) and not duo_tail(ctx)

    def draw(k: Array, logits: Array, x_t: Array, t: Array, greedy: Array) -> Array:
        mu = ctx.convert(logits, x_t, t, "denoiser")
        values = categorical(k, mu, method=settings["categorical"])
        return jnp.where(greedy, jnp.argmax(mu, -1), values).astype(jnp.int32)

    def body(carry, i):
        x_t, nfe, key = carry
        key, k_unmask, k_val = jax.random.split(key, 3)
        t, s = ctx.times(grid[i]), ctx.times(grid[i + 1])
        masked = proc.is_noisy(x_t)
        greedy = jnp.asarray(last_step_greedy) & (i == num_steps - 1)
        unmask = masked & (bernoulli64(k_unmask, unmask_probability(proc, x_t, t, s)) | greedy)
        most = jnp.max(unmask.sum(-1))

        def dense(_):
            values = draw(k_val, ctx.network(x_t, t), x_t, t, greedy)
            return jnp.where(unmask, values, x_t)

        def at_positions(_):
            # The unmasking positions first (stable), then fill-up slots that are ignored.
            pos = jnp.argsort(~unmask, axis=-1, stable=True)[:, :cap].astype(jnp.int32)
            current = jnp.take_along_axis(x_t, pos, axis=1)
            values = draw(k_val, ctx.network_at(x_t, t, pos), current, t, greedy)
            chosen = jnp.take_along_axis(unmask, pos, axis=1)
            return x_t.at[rows, pos].set(jnp.where(chosen, values, current))

        branches = [lambda _: x_t, dense] + ([at_positions] if sparse else [])
        which = jnp.where(most == 0, 0, jnp.where(most <= cap, len(branches) - 1, 1))
        x_s = ctx.apply_prompt(jax.lax.switch(which, branches, None))
        return (x_s, nfe + (which > 0).astype(jnp.int32), key), None

    carry = (x, jnp.array(0, jnp.int32), key)
    (x, nfe, _), _ = jax.lax.scan(body, carry, jnp.arange(num_steps))
    return x, nfe


def run_dense(key: Array, ctx: Context) -> tuple[Array, Array]:
    """The dense step: the reverse kernel over all V states at every position, one draw each
    (any process, guidance; for the masked process the same law as `run_masked` at a higher cost;
    benchmarks/sampling_speed.py keeps it as the baseline 'ancestral_dense_exact')."""
    settings = ctx.settings  # validated by sampling.sampler_settings
    num_steps, bridge = settings["num_steps"], settings["bridge"]
    reuse = (bool(settings["reuse_output"]) and ctx.proc.mask_id is not None and not ctx.time_conditioning
             and ctx.guide is None)
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    grid = sampling_grid(ctx)
    last_step_greedy = bool(settings["greedy_final"]) and not duo_tail(ctx)

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
        if last_step_greedy:
            greedy = greedy_step(ctx.proc, ctx.output_parameterization, logits, x_t, t)
            x_s = jnp.where(i == num_steps - 1, greedy, x_s)
        x_s = ctx.apply_prompt(x_s)
        valid = jnp.all(x_s == x_t)
        return (x_s, logits, valid, nfe, key), None

    init_logits = jnp.zeros((ctx.num_samples, ctx.seq_len, ctx.proc.num_classes), jnp.float32)
    carry = (x, init_logits, jnp.array(False), jnp.array(0, jnp.int32), key)
    (x, _, _, nfe, _), _ = jax.lax.scan(body, carry, jnp.arange(num_steps))
    return x, nfe
