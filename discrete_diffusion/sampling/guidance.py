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
    cfg_form         'denoiser' (default) | 'posterior': which distributions CFG mixes, (1) or (2).
    null_label       the unconditional label id (default config.model.num_labels).
    classifier_mode  'exact' | 'taylor' (classifier guidance only; default 'exact').
    classifier_time  't' (default, the papers) | 's': the time the classifier is read at in (3).

For any real w: w = 1 is the conditional model, w = 0 the unconditional one, 0 < w < 1
interpolates, w > 1 extrapolates. Mixes are taken in log space and renormalized; states impossible
under a mixed term with nonzero coefficient (log-prob NEG_INF or -inf) stay impossible.

CFG, cfg_form='denoiser' (`cfg_model_fn`, usable with every sampler of the registry). The network
outputs at the label and at the null label are converted to the denoiser
mu(. | x_t, y) = p(x_0^i | x_t, y) and mixed,

    log mu_w = w log mu(. | x_t, y) + (1 - w) log mu(. | x_t, null) + const,                   (1)

and every sampler then uses mu_w as its network output (the wrapper returns denoiser logits, so
the sampler context's parameterization becomes 'denoiser'). Which paper: for the masked process
(1) is MDLM/UDLM's D-CFG (discrete-diffusion-guidance `_cfg_denoise`, masked branch): the step
keeps the unguided unmasking rate (alpha_s - alpha_t)/(1 - alpha_t) and guides only the value.
For uniform diffusion (1) is also a geometric mix of the LOO posteriors, exactly: the denoiser is
log mu = log rho + log(1 + K alpha_t/(1 - alpha_t)) onehot(x_t^i) + const, and the self-evidence
terms enter with weights w + (1 - w) = 1, so the LOO posterior of mu_w is
rho_w ∝ rho(. | y)^w rho(. | null)^(1 - w), which the exact bridge then uses (UDLM's code does
not do this for uniform diffusion; it mixes the posteriors, (2)).

CFG, cfg_form='posterior' (Duo, trainer_base.py `_get_guided_posterior_from_xt`; UDLM's D-CFG for
uniform diffusion). Each step's kernel is the geometric mix of the conditional and unconditional
kernels,

    p_w(x_s^i | x_t) ∝ p_theta(x_s^i | x_t, y)^w p_theta(x_s^i | x_t, null)^(1 - w).            (2)

For the masked process this also tilts the unmasking rate: a masked token stays masked with
probability proportional to (1 - alpha_s)/(1 - alpha_t) (the same in both kernels) against
(alpha_s - alpha_t)/(1 - alpha_t) sum_v mu(v | y)^w mu(v | null)^(1 - w) for unmasking, which is
<= (alpha_s - alpha_t)/(1 - alpha_t) for 0 < w < 1 and >= it for w > 1 (Hölder; equal where the
two denoisers agree). (2) applies to
the samplers with a per-step kernel (`KERNEL_SAMPLERS`), to the whole kernel of the step: for
'psi' with kappa < 1 that is the mix of the Psi kernels, whereas Duo's code mixes the predictor
and the to-time-0 posteriors separately and then combines them with kappa (equal at kappa = 1);
for the score samplers it is the mix of the Euler / Tweedie kernels. Duo's code also marks an
entry impossible when it is impossible in either kernel, even at w in {0, 1}. The network is
called at the label and at the null label (two calls on N sequences per step; NFE counts one).

Neither form samples the tilted law p(x | y)^w p(x)^(1 - w) except at w in {0, 1}: both tilt
per-position distributions, and a geometric mix of per-step kernels is not the kernel of the
tilted law. At w = 1 both are the conditional model, exact with an exact model.

Classifier guidance (every sampler with a per-step kernel, `KERNEL_SAMPLERS`). With a noisy
classifier `classifier_fn(x_onehot, t) -> log p_phi(y | x_t, t)` (x_onehot float `[B, L, V]`, t
`[B]` or `[B, L]`, output `[B, num_labels]` log-probabilities) and the unconditional network's
step kernel p_theta(x_s^i | x_t), a step draws every position from

    p(x_s^i = v) ∝ p_theta(x_s^i = v | x_t) p_phi(y | x_t with x^i <- v, t)^w,                  (3)

the classifier evaluated at the current time t (Nisonoff et al. 2024, "Unlocking guidance for
discrete state-space diffusion and flow models", whose guided rates are
R_t(x -> x^{i <- v}) p(y | x^{i <- v}, t) / p(y | x, t); UDLM's `_cbg_denoise`, which passes
`time_conditioning` = sigma_t to the classifier):
  * 'exact':  the classifier is evaluated on all L V single-token changes of x_t (one batched
              call of N L V sequences per step);
  * 'taylor': first-order expansion in the one-hot input, log p_phi(y | x with x^i <- v) ≈
              log p_phi(y | x) + g[i, v] - g[i, x^i], g = d log p_phi(y | x) / d onehot(x)
              (one forward + backward pass per step).
Approximation: (3) guides each position as if it were the only one changing in the step, and at
the start of the step. In continuous time (3) gives Nisonoff et al.'s guided rates, exact at w = 1
with an exact model and classifier (they sample p(x | y)); with finite steps, simultaneous
changes and the classifier's time are O(step) errors. classifier_time='s' reads the classifier at
the end of the step instead, p_phi(y | x_t with x^i <- v, s): Bayes' rule
p(x_s | x_t, y) = p(x_s | x_t) p(y | x_s, s) / p(y | x_t, t) makes that exact for a step that
changes one position (L = 1), and on the enumerable toy of `benchmarks/approximate_samplers_tv.py`
(K = 3, L = 2, w = 1, exact model and classifier, 100 steps, 20k samples, floor 0.0065) it is
closer to p(x | y) for uniform diffusion: ancestral TV 0.0050 (s) against 0.0081 (t). For masked
diffusion the two agree (the exact classifier does not depend on t on the support of p_t), and the
guided step is then the exact conditional single-position kernel (TV 0.0045).
The model is called unconditionally: `model_fn(x_t, t)` when config.model.num_labels is 0, else
`model_fn(x_t, t, label=null_label)`. NFE counts network calls (num_steps), not classifier calls.

How the kernels are guided: the samplers build each step's kernel through `Context.step_kernel`,
and `KernelGuide` (the context's `guide`) replaces it by (2) or (3). 'informed_pc' guides its
predictor step and its corrector's single-site conditionals p_s(x^i = v | x^{-i}) (a step s -> s):
with classifier guidance these become p_s(v | x^{-i}) p_phi(y | x with x^i <- v, s)^w normalized,
exactly the single-site conditionals of p_s(x) p_phi(y | x, s)^w, so its Gibbs / Metropolis-
Hastings corrector targets the guided marginal (p_s(x | y) at w = 1, exact with an exact model
and classifier). 'first_hitting' (no per-step kernel: it draws event times, then a value from the
denoiser) and 'audm' / 'reaudm' (their state carries the noise ids) are not guided this way: use
cfg_form='denoiser' there.
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
from discrete_diffusion.sampling import ancestral
from discrete_diffusion.sampling.context import Context, accepts_output_positions

Array = jnp.ndarray

GUIDANCE = ("none", "cfg", "classifier")
CFG_FORMS = ("denoiser", "posterior")
CLASSIFIER_MODES = ("exact", "taylor")
# Samplers that build each step's kernel through `Context.step_kernel` (guidable by `KernelGuide`).
KERNEL_SAMPLERS = ("ancestral", "psi", "score_euler", "score_tweedie", "informed_pc")
DEFAULTS: dict[str, Any] = {
    "guidance": None,  # None: 'classifier' if a classifier_fn is given, else 'cfg'
    "guidance_weight": 1.0,
    "cfg_form": "denoiser",  # 'denoiser': equation (1), every sampler; 'posterior': equation (2)
    "null_label": None,  # None: config.model.num_labels
    "classifier_mode": "exact",
    "classifier_time": "t",  # 't' (the papers) | 's' (Bayes' rule for a one-position step)
}
TYPES = {"guidance": str, "null_label": int}  # the type of each field whose default is None
CLASSIFIER_TIMES = ("t", "s")


# ---- classifier-free guidance ---------------------------------------------------------------------
def cfg_mix(log_cond: Array, log_uncond: Array, weight: float) -> Array:
    """Equation (1): log_softmax(w log mu_cond + (1 - w) log mu_uncond), `[..., K]` (any log-probs).

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


def mix_kernels(cond: Array, uncond: Array, weight: float) -> Array:
    """Equation (2): probabilities ∝ cond^w uncond^(1 - w) over the last axis, `[..., V]`.

    Zero entries of a kernel with nonzero coefficient stay zero (`cfg_mix` on the log kernels).
    """
    def log(p: Array) -> Array:
        return jnp.where(p > 0, jnp.log(jnp.maximum(p, 1e-38)), NEG_INF)

    return jnp.exp(cfg_mix(log(cond), log(uncond), weight))


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

    def guided(x_t: Array, t: Array, output_positions: Array | None = None,
               **inputs: Array) -> Array:
        # output_positions [N, P]: the guided logits [N, P, K] there only (the conversion and the
        # mix act per position, so x_t is gathered there too)
        n = x_t.shape[0]
        labels = jnp.concatenate([jnp.broadcast_to(label, (n,)), jnp.full((n,), null_label, jnp.int32)])
        double = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), (x_t, t, inputs))
        x2, t2, inputs2 = double
        if output_positions is None:
            logits = model_fn(x2, t2, label=labels, **inputs2)
        else:
            pos2 = jnp.concatenate([output_positions, output_positions])
            logits = _at_positions(model_fn, pos2, x2, t2, label=labels, **inputs2)
            x2 = jnp.take_along_axis(x2, pos2, axis=1)
        log_mu = params_lib.convert(proc, parameterization, "denoiser", logits, x2, t2)
        return cfg_mix(log_mu[:n], log_mu[n:], weight)

    return guided


def _at_positions(model_fn: Callable[..., Array], positions: Array, x_t: Array, t: Array,
                  **inputs: Array) -> Array:
    """model_fn's logits `[N, P, K]` at `positions` `[N, P]`: through its `output_positions`
    keyword when it has one, else the full logits gathered."""
    if accepts_output_positions(model_fn):
        return model_fn(x_t, t, output_positions=positions, **inputs)
    return jnp.take_along_axis(model_fn(x_t, t, **inputs), positions[..., None], axis=1)


def conditional_model_fn(model_fn: Callable[..., Array], label: Array) -> Callable[..., Array]:
    """`model_fn(x_t, t, **inputs)` of the conditional network at a fixed label `[N]` (or scalar)."""
    label = jnp.asarray(label, jnp.int32)

    def conditional(x_t: Array, t: Array, output_positions: Array | None = None,
                    **inputs: Array) -> Array:
        labels = jnp.broadcast_to(label, (x_t.shape[0],))
        if output_positions is None:
            return model_fn(x_t, t, label=labels, **inputs)
        return _at_positions(model_fn, output_positions, x_t, t, label=labels, **inputs)

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
    """Equation (3): probs * exp(w log p_phi), renormalized per position; zeros stay zero."""
    log_p = jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-38)), -jnp.inf)
    return jax.nn.softmax(log_p + weight * log_classifier, axis=-1)


def classifier_log_probs(
    classifier_fn: Callable[[Array, Array], Array], x: Array, t: Array, label: Array, num_states: int,
    mode: str = "exact",
) -> Array:
    """log p_phi(y | x with x^i <- v, t) `[N, L, V]` up to a per-position constant ('exact' or 'taylor')."""
    if mode not in CLASSIFIER_MODES:
        raise ValueError(f"config.sampler.classifier_mode={mode!r} is not one of {list(CLASSIFIER_MODES)}")
    fn = single_change_log_probs if mode == "exact" else taylor_log_probs
    return fn(classifier_fn, x, t, label, num_states)


@dataclasses.dataclass(frozen=True)
class KernelGuide:
    """The guide of a sampler's step kernels (`Context.guide`, called by `Context.step_kernel`).

    null_model_fn: set for classifier-free guidance in the posterior form, equation (2): the
    network at the null label (the context's model_fn is the network at the label).
    classifier_fn, label, classifier_mode, classifier_time: set for classifier guidance,
    equation (3), the classifier evaluated at the step's time t (or at s).
    weight: w.
    """

    weight: float
    null_model_fn: Callable[..., Array] | None = None
    classifier_fn: Callable[[Array, Array], Array] | None = None
    label: Array | None = None
    classifier_mode: str = "exact"
    classifier_time: str = "t"

    def __call__(
        self, ctx: Context, kernel: Callable[[Array], Array], logits: Array, x_t: Array, t: Array,
        s: Array,
    ) -> Array:
        probs = kernel(logits)
        if self.null_model_fn is not None:
            null = dataclasses.replace(ctx, model_fn=self.null_model_fn, guide=None)
            probs = mix_kernels(probs, kernel(null.network(x_t, t)), self.weight)
        if self.classifier_fn is not None:
            time = t if self.classifier_time == "t" else s
            log_cls = classifier_log_probs(self.classifier_fn, x_t, time, self.label, ctx.proc.num_states,
                                           self.classifier_mode)
            probs = guide_probs(probs, log_cls, self.weight)
        return probs


def run_classifier_guided(
    key: Array, ctx: Context, classifier_fn: Callable[[Array, Array], Array], label: Array,
    weight: float, mode: str = "exact",
) -> tuple[Array, Array]:
    """Ancestral sampling with classifier guidance, equation (3); returns (x_0 int32 [N, L], NFE)."""
    label = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (ctx.num_samples,))
    guide = KernelGuide(weight, classifier_fn=classifier_fn, label=label, classifier_mode=mode)
    return ancestral.run(key, dataclasses.replace(ctx, guide=guide))


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
    if out["cfg_form"] not in CFG_FORMS:
        raise ValueError(f"config.sampler.cfg_form={out['cfg_form']!r} is not one of {list(CFG_FORMS)}")
    mode = out["classifier_mode"]
    if mode not in CLASSIFIER_MODES:
        raise ValueError(f"config.sampler.classifier_mode={mode!r} is not one of {list(CLASSIFIER_MODES)}")
    if out["classifier_time"] not in CLASSIFIER_TIMES:
        raise ValueError(f"config.sampler.classifier_time={out['classifier_time']!r} is not one of "
                         f"{list(CLASSIFIER_TIMES)}")
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
    from discrete_diffusion.sampling import SAMPLERS, SampleResult  # circular import

    ctx = guided_context(model_fn, config, num_samples, seq_len, label, weight=weight,
                         classifier_fn=classifier_fn, **prompt)
    run = SAMPLERS[ctx.settings["name"]].run
    tokens, nfe = jax.jit(lambda k: run(k, ctx))(key)
    return SampleResult(tokens=tokens, nfe=int(nfe))


def guided_context(
    model_fn: Callable[..., Array], config: Any, num_samples: int, seq_len: int,
    label: Any = None, *, weight: float | None = None,
    classifier_fn: Callable[[Array, Array], Array] | None = None, **prompt: Array,
) -> Context:
    """The sampler context that `guided_generate` runs: its model_fn, parameterization and guide
    carry the guidance (arguments as in `guided_generate`)."""
    from discrete_diffusion.sampling import make_context  # circular import

    g = guidance_settings(config, weight, classifier_fn)
    model_section = config.get("model", None)
    num_labels = int(model_section.get("num_labels", 0) if model_section is not None else 0)
    null_label = g["null_label"] if g["null_label"] is not None else num_labels
    ctx = make_context(model_fn, config, num_samples, seq_len,
                       prompt.pop("prompt_tokens", None), prompt.pop("prompt_mask", None))
    if prompt:
        raise TypeError(f"unexpected arguments {sorted(prompt)}")
    w, kind = g["guidance_weight"], g["guidance"]
    by_kernel = kind == "classifier" or (kind == "cfg" and g["cfg_form"] == "posterior")
    if by_kernel:
        _check_kernel_sampler(ctx, "config.sampler.guidance='classifier'" if kind == "classifier"
                              else "config.sampler.cfg_form='posterior'")

    if kind == "classifier":
        if label is None:
            raise ValueError("classifier guidance needs a label")
        probe = jax.eval_shape(classifier_fn, jax.ShapeDtypeStruct((1, seq_len, ctx.proc.num_states),
                                                                   jnp.float32),
                               jax.ShapeDtypeStruct((1,), jnp.float32))
        labels = _labels(label, num_samples, probe.shape[-1], "the classifier's number of labels")
        base = model_fn if num_labels == 0 else conditional_model_fn(model_fn, null_label)
        guide = KernelGuide(w, classifier_fn=classifier_fn, label=labels,
                            classifier_mode=g["classifier_mode"], classifier_time=g["classifier_time"])
        ctx = dataclasses.replace(ctx, model_fn=base, guide=guide)
    else:
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
            if g["cfg_form"] == "posterior":
                guide = KernelGuide(w, null_model_fn=conditional_model_fn(model_fn, null_label))
                ctx = dataclasses.replace(ctx, model_fn=conditional_model_fn(model_fn, labels), guide=guide)
            else:
                guided = cfg_model_fn(model_fn, ctx.proc, ctx.parameterization, labels, null_label, w)
                ctx = dataclasses.replace(ctx, model_fn=guided, parameterization="denoiser")
    return ctx


def _check_kernel_sampler(ctx: Context, what: str) -> None:
    """Guidance of the step kernels needs a sampler that builds them through `Context.step_kernel`."""
    name = ctx.settings["name"]
    if name not in KERNEL_SAMPLERS:
        raise ValueError(
            f"{what} guides each step's kernel, and config.sampler.name={name!r} has none; use one of "
            f"{list(KERNEL_SAMPLERS)} (or classifier-free guidance with config.sampler.cfg_form='denoiser')"
        )
    if ctx.settings.get("greedy_final"):
        raise ValueError(f"config.sampler.greedy_final=True takes the unguided argmax; it is not "
                         f"available with {what}")
