"""Class-conditional sampling: classifier-free guidance (CFG) and classifier guidance (uniform_duo_mdlm.md
section 4.3).

A class-conditional network is called `model_fn(x_t, t, label=y)` with y int32 `[N]`; the null
label (unconditional output, trained by label dropout) is `config.sampler.null_label`, by default
`config.model.num_labels` (the transformer's extra label row). Entry point:

    result = guided_generate(key, model_fn, config, N, L, label=y, weight=w)   # SampleResult

Config fields (under `config.sampler`, all optional):
    guidance         'none' | 'cfg' | 'classifier'; default 'classifier' when a classifier_fn is
                     given, else 'cfg'. 'none' samples the conditional model as is.
    guidance_weight  w, a finite real (default 1.0); the `weight` argument overrides it.
    null_label       the unconditional label id (default config.model.num_labels).
    classifier_mode  'exact' | 'taylor' (classifier guidance only; default 'exact').

CFG (`cfg_model_fn`, usable with every sampler of the registry). The network outputs at the label
and at the null label are converted to the denoiser mu(. | x_t, y) = p(x_0^i | x_t, y) and mixed in
log space,

    log mu_w = w log mu(. | x_t, y) + (1 - w) log mu(. | x_t, null)   (log-normalized),        (1)

for any real w: w = 1 is the conditional model, w = 0 the unconditional one, 0 < w < 1
interpolates, w > 1 extrapolates. The wrapper returns denoiser logits, so the sampler context's
parameterization becomes 'denoiser': for the masked process (1) is MDLM/UDLM's D-CFG; for uniform
diffusion the mix is applied to the denoiser and each sampler converts the result as it needs
(to the LOO posterior for the exact bridge, to the score for the score samplers) -- it is not a
mix of posteriors or of LOO posteriors. States impossible under a mixed term (log-prob NEG_INF or
-inf) stay impossible. The guided sampler targets the tilted law p(x | y)^w p(x)^(1 - w) only
approximately: (1) tilts each per-position denoiser, and a geometric mix of per-step kernels is
not the kernel of the tilted law (exact only at w in {0, 1}).

Classifier guidance (`run_classifier_guided`, an ancestral sampler; config.sampler.name must be
'ancestral'). With a noisy classifier `classifier_fn(x_onehot, t) -> log p_phi(y | x_t, t)`
(x_onehot float `[B, L, V]`, t `[B]` or `[B, L]`, output `[B, num_labels]` log-probabilities) and the
unconditional network's reverse kernel p_theta(x_s^i | x_t), one step draws every position from

    p(x_s^i = v) ∝ p_theta(x_s^i = v | x_t) p_phi(y | x_t with x^i <- v, s)^w,                 (2)

  * 'exact':  the classifier is evaluated on all L V single-token changes of x_t (one batched
              call of N L V sequences per step);
  * 'taylor': first-order expansion in the one-hot input, log p_phi(y | x with x^i <- v) ≈
              log p_phi(y | x) + g[i, v] - g[i, x^i], g = d log p_phi(y | x) / d onehot(x)
              (one forward + backward pass per step).
Approximation: (2) guides each position as if it were the only one changing in the step (the
exact guided kernel p_theta(x_s | x_t) p_phi(y | x_s)^w does not factorize over positions). As
the step size shrinks, simultaneous changes become rare and, at w = 1 with exact model and
classifier, the sampler approaches p(x | y). The model is called unconditionally: `model_fn(x_t, t)`
when config.model.num_labels is 0, else `model_fn(x_t, t, label=null_label)`. NFE counts network
calls (num_steps), not classifier calls.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import NEG_INF, InterpolatingProcess
from discrete_diffusion.sampling.ancestral import reverse_kernel, sample_from_probs
from discrete_diffusion.sampling.context import Context, time_grid

Array = jnp.ndarray

GUIDANCE = ("none", "cfg", "classifier")
CLASSIFIER_MODES = ("exact", "taylor")
DEFAULTS: dict[str, Any] = {
    "guidance": None,  # None: 'classifier' if a classifier_fn is given, else 'cfg'
    "guidance_weight": 1.0,
    "null_label": None,  # None: config.model.num_labels
    "classifier_mode": "exact",
}


# ---- classifier-free guidance ---------------------------------------------------------------------
def cfg_mix(log_cond: Array, log_uncond: Array, weight: float) -> Array:
    """Equation (1): log_softmax(w log mu_cond + (1 - w) log mu_uncond), `[..., K]`.

    Entries impossible in a term with nonzero coefficient stay impossible (NEG_INF).
    """
    log_c = jax.nn.log_softmax(log_cond, axis=-1)
    log_u = jax.nn.log_softmax(log_uncond, axis=-1)
    bad_c, bad_u = log_c <= 0.5 * NEG_INF, log_u <= 0.5 * NEG_INF
    mixed = weight * jnp.where(bad_c, 0.0, log_c) + (1.0 - weight) * jnp.where(bad_u, 0.0, log_u)
    impossible = jnp.zeros(mixed.shape, bool)
    if weight != 0:
        impossible = impossible | bad_c
    if weight != 1:
        impossible = impossible | bad_u
    return jax.nn.log_softmax(jnp.where(impossible, NEG_INF, mixed), axis=-1)


def cfg_model_fn(
    model_fn: Callable[..., Array], proc: InterpolatingProcess, parameterization: str,
    label: Array, null_label: int, weight: float,
) -> Callable[..., Array]:
    """A `model_fn(x_t, t, **inputs)` returning the guided denoiser logits of equation (1).

    The conditional and null-label outputs come from one call on the doubled batch
    (`model_fn(concat[x_t, x_t], concat[t, t], label=concat[label, null])`); extra inputs
    (e.g. `noise`) are doubled the same way. `parameterization` is what model_fn's logits mean.
    """
    label = jnp.asarray(label, jnp.int32)

    def guided(x_t: Array, t: Array, **inputs: Array) -> Array:
        n = x_t.shape[0]
        labels = jnp.concatenate([jnp.broadcast_to(label, (n,)), jnp.full((n,), null_label, jnp.int32)])
        double = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), (x_t, t, inputs))
        logits = model_fn(double[0], double[1], label=labels, **double[2])
        log_mu = params_lib.to_denoiser(proc, parameterization, logits, *double[:2])
        return cfg_mix(log_mu[:n], log_mu[n:], weight)

    return guided


def conditional_model_fn(model_fn: Callable[..., Array], label: Array) -> Callable[..., Array]:
    """`model_fn(x_t, t, **inputs)` of the conditional network at a fixed label `[N]` (or scalar)."""
    label = jnp.asarray(label, jnp.int32)

    def conditional(x_t: Array, t: Array, **inputs: Array) -> Array:
        return model_fn(x_t, t, label=jnp.broadcast_to(label, (x_t.shape[0],)), **inputs)

    return conditional


# ---- classifier guidance --------------------------------------------------------------------------
def _select(log_probs: Array, label: Array) -> Array:
    """log_probs[b, label[b]] for `[B, C]` log-probabilities."""
    return jnp.take_along_axis(log_probs, label[:, None], axis=-1)[:, 0]


def single_change_log_probs(
    classifier_fn: Callable[[Array, Array], Array], x: Array, t: Array, label: Array, num_states: int,
) -> Array:
    """log p_phi(y | x with x^i <- v, t) for every position i and value v, `[N, L, V]` (exact mode).

    One classifier call on the N L V candidates (candidate (n, i, v) differs from x[n] at i only).
    """
    n, length = x.shape
    cand = jnp.broadcast_to(x[:, None, None, :], (n, length, num_states, length))
    change = jnp.eye(length, dtype=bool)[None, :, None, :]  # position i of candidate (i, v)
    values = jnp.arange(num_states, dtype=x.dtype)[None, None, :, None]
    cand = jnp.where(change, values, cand).reshape(n * length * num_states, length)
    t_rep = jnp.repeat(jnp.asarray(t), length * num_states, axis=0)
    log_probs = classifier_fn(jax.nn.one_hot(cand, num_states), t_rep)
    lab = jnp.repeat(label, length * num_states)
    return _select(log_probs, lab).reshape(n, length, num_states)


def taylor_log_probs(
    classifier_fn: Callable[[Array, Array], Array], x: Array, t: Array, label: Array, num_states: int,
) -> Array:
    """First-order estimate of `single_change_log_probs`: g[n, i, v] - g[n, i, x^i] (+ const),

    g = d log p_phi(y | onehot) / d onehot at onehot(x). The constant log p_phi(y | x) is dropped
    (it cancels in the per-position normalization of equation (2)).
    """
    onehot = jax.nn.one_hot(x, num_states)
    grad = jax.grad(lambda oh: _select(classifier_fn(oh, t), label).sum())(onehot)
    return grad - jnp.sum(grad * onehot, axis=-1, keepdims=True)


def guide_probs(probs: Array, log_classifier: Array, weight: float) -> Array:
    """Equation (2): probs * exp(w log p_phi), renormalized per position; zeros stay zero."""
    log_p = jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-38)), -jnp.inf)
    return jax.nn.softmax(log_p + weight * log_classifier, axis=-1)


def run_classifier_guided(
    key: Array, ctx: Context, classifier_fn: Callable[[Array, Array], Array], label: Array,
    weight: float, mode: str = "exact",
) -> tuple[Array, Array]:
    """Ancestral sampling with classifier guidance, equation (2); returns (x_0 int32 [N, L], NFE)."""
    if mode not in CLASSIFIER_MODES:
        raise ValueError(f"config.sampler.classifier_mode={mode!r} is not one of {list(CLASSIFIER_MODES)}")
    num_steps = ctx.settings["num_steps"]
    bridge = ctx.settings.get("bridge", "loo_plugin")
    label = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (ctx.num_samples,))
    log_probs_fn = single_change_log_probs if mode == "exact" else taylor_log_probs
    key, k_prior = jax.random.split(key)
    x = ctx.initial_state(k_prior)
    grid = time_grid(num_steps)

    def body(carry, i):
        x_t, key = carry
        key, k_step = jax.random.split(key)
        t, s = ctx.times(grid[i]), ctx.times(grid[i + 1])
        probs = reverse_kernel(ctx.proc, ctx.output_parameterization, ctx.network(x_t, t), x_t, t, s, bridge)
        log_cls = log_probs_fn(classifier_fn, x_t, s, label, ctx.proc.num_states)
        guided = guide_probs(probs, log_cls, weight)
        x_s = ctx.apply_prompt(sample_from_probs(k_step, guided, ctx.settings["categorical"]))
        return (x_s, key), None

    (x, _), _ = jax.lax.scan(body, (x, key), jnp.arange(num_steps))
    return x, jnp.array(num_steps, jnp.int32)


# ---- entry point ----------------------------------------------------------------------------------
def guidance_settings(
    config: Any, weight: float | None = None, classifier_fn: Callable | None = None
) -> dict[str, Any]:
    """The guidance fields of config.sampler with defaults filled in, validated (errors name the field)."""
    section = config.get("sampler", None)
    out = {k: (section.get(k, v) if section is not None else v) for k, v in DEFAULTS.items()}
    if weight is not None:
        out["guidance_weight"] = weight
    if out["guidance"] is None:
        out["guidance"] = "classifier" if classifier_fn is not None else "cfg"
    if out["guidance"] not in GUIDANCE:
        raise ValueError(f"config.sampler.guidance={out['guidance']!r} is not one of {list(GUIDANCE)}")
    w = out["guidance_weight"]
    if isinstance(w, bool) or not isinstance(w, int | float | np.number) or not math.isfinite(w):
        raise ValueError(f"config.sampler.guidance_weight={w!r} (or weight=) must be a finite real number")
    out["guidance_weight"] = float(w)
    mode = out["classifier_mode"]
    if mode not in CLASSIFIER_MODES:
        raise ValueError(f"config.sampler.classifier_mode={mode!r} is not one of {list(CLASSIFIER_MODES)}")
    if out["guidance"] == "classifier" and classifier_fn is None:
        raise ValueError("config.sampler.guidance='classifier' needs classifier_fn")
    if out["guidance"] != "classifier" and classifier_fn is not None:
        raise ValueError(
            f"classifier_fn was given but config.sampler.guidance={out['guidance']!r}; set it to 'classifier'"
        )
    return out


def _labels(label: Any, num_samples: int, num_labels: int, what: str) -> Array:
    """label (int or int [N]) as int32 [N], checked against [0, num_labels)."""
    arr = np.asarray(label)
    bad_shape = arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (num_samples,))
    if not np.issubdtype(arr.dtype, np.integer) or bad_shape:
        raise ValueError(f"label must be an int or an int array of shape [{num_samples}], got {label!r}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_labels):
        raise ValueError(f"label={label!r} is out of range [0, {num_labels}) ({what})")
    return jnp.broadcast_to(jnp.asarray(arr, jnp.int32), (num_samples,))


def guided_generate(
    key: Array, model_fn: Callable[..., Array], config: Any, num_samples: int, seq_len: int,
    label: Any = None, *, weight: float | None = None,
    classifier_fn: Callable[[Array, Array], Array] | None = None, **prompt: Array,
) -> Any:
    """Class-conditional sampling with the guidance of `config.sampler.guidance` (module docstring).

    label: int or int32 [N]; weight: the guidance weight w (overrides config.sampler.guidance_weight);
    classifier_fn: log p_phi(y | x_t, t) for classifier guidance; prompt: prompt_tokens / prompt_mask
    as in `generate`. Returns a `SampleResult` (tokens int32 [N, L], nfe).
    """
    from discrete_diffusion.sampling import SAMPLERS, SampleResult, make_context  # circular import

    g = guidance_settings(config, weight, classifier_fn)
    model_section = config.get("model", None)
    num_labels = int(model_section.get("num_labels", 0) if model_section is not None else 0)
    null_label = g["null_label"] if g["null_label"] is not None else num_labels
    ctx = make_context(model_fn, config, num_samples, seq_len,
                       prompt.pop("prompt_tokens", None), prompt.pop("prompt_mask", None))
    if prompt:
        raise TypeError(f"unexpected arguments {sorted(prompt)}")
    w, kind = g["guidance_weight"], g["guidance"]

    if kind == "classifier":
        if ctx.settings["name"] != "ancestral":
            raise ValueError(
                f"config.sampler.name={ctx.settings['name']!r}: classifier guidance runs the ancestral "
                "step; set config.sampler.name='ancestral'"
            )
        if label is None:
            raise ValueError("classifier guidance needs a label")
        probe = jax.eval_shape(classifier_fn, jax.ShapeDtypeStruct((1, seq_len, ctx.proc.num_states),
                                                                   jnp.float32),
                               jax.ShapeDtypeStruct((1,), jnp.float32))
        labels = _labels(label, num_samples, probe.shape[-1], "the classifier's number of labels")
        base = model_fn if num_labels == 0 else conditional_model_fn(model_fn, null_label)
        ctx = dataclasses.replace(ctx, model_fn=base)
        run = jax.jit(lambda k: run_classifier_guided(k, ctx, classifier_fn, labels, w, g["classifier_mode"]))
        tokens, nfe = run(key)
        return SampleResult(tokens=tokens, nfe=int(nfe))

    if label is not None and num_labels <= 0:
        raise ValueError(
            f"label={label!r} was passed but config.model.num_labels={num_labels}: the model is "
            "unconditional; set config.model.num_labels (or use classifier guidance)"
        )
    if kind == "none":
        if label is None:
            base = model_fn if num_labels == 0 else conditional_model_fn(model_fn, null_label)
        else:
            base = conditional_model_fn(model_fn, _labels(label, num_samples, num_labels,
                                                          "config.model.num_labels"))
        ctx = dataclasses.replace(ctx, model_fn=base)
    else:  # cfg
        if label is None:
            raise ValueError("config.sampler.guidance='cfg' needs a label")
        if not 0 <= null_label <= num_labels:
            raise ValueError(f"config.sampler.null_label={null_label!r} must be in [0, {num_labels}]")
        labels = _labels(label, num_samples, num_labels, "config.model.num_labels")
        guided = cfg_model_fn(model_fn, ctx.proc, ctx.parameterization, labels, null_label, w)
        ctx = dataclasses.replace(ctx, model_fn=guided, parameterization="denoiser")
    run = SAMPLERS[ctx.settings["name"]].run
    tokens, nfe = jax.jit(lambda k: run(k, ctx))(key)
    return SampleResult(tokens=tokens, nfe=int(nfe))
