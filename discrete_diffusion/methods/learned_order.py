"""The `learned_order` method: masked diffusion with a learned multivariate schedule, which learns
the order in which positions are decoded (Garg, Kohli & Sarawagi 2025; GenMD4 of MD4, Shi et al.
2024). Digest: papers/fhs_order_vadd_sedd.md section 2.

Schedules (`config.method.schedule`), w = softplus(theta) > 0 learned with the network:

    'position':  alpha_{t,l} = 1 - t^{w_l},        w of shape [L]  (Garg et al.)
    'value':     alpha_{t,l} = 1 - t^{w[x_0^l]},   w of shape [K]  (GenMD4: one power per value)

params = {'network': DiT parameters, 'schedule': {'theta': [L] or [K]}}; the schedule has its own
Adam (`config.method.schedule_learning_rate`, `optimizer`), replicated (`partition_rules`).

The NELBO (continuous time, t in (0, 1], no t_min): with r = -alpha'/(1 - alpha) = w / t,

    position:  L(x_0) = int_0^1 E_{z ~ q_t(.|x_0; w)} sum_l 1[z_l = m] r_l (-log mu(x_0^l | z)) dt
    value:     L(x_0) = int_0^1 E_z sum_l 1[z_l = m] ( r_{x_0^l} (-log mu_{x_0^l} - 1)
                                                      + sum_k r_k mu_k(z) ) dt     (MD4 eq. 12)

(`losses.masked_nelbo_rates`). For a time-independent denoiser the position NELBO is exactly the
Plackett-Luce mixture of autoregressive NLLs over orders (Garg et al. Prop. 3.1),

    L(x_0) = sum_pi P(pi) sum_i -log mu(x_{pi(i)} | x_{pi(<i)}),
    P(pi)  = prod_i w_{pi(i)} / sum_{j >= i} w_{pi(j)},

pi(1) the position decoded first: a larger w_l keeps l clean longer in the forward process, so it
is decoded *earlier* in reverse. For the value schedule the same holds with w_l = w[x_0^l] plus the
compensator int sum_{l masked} (sum_k r_k mu_k - r_{x_0^l}) (the model's unmasking rate depends
on its predicted value); tests/test_methods_learned_order.py checks both by enumeration.

Time sampling. Uniform t on [t_min, 1] (MDLM, GenMD4's t1 = 1e-3 plus a reconstruction term) is
badly biased here: a position with a small w is masked by t_min with probability t_min^w (0.5 for
w = 0.1, t_min = 1e-3), so truncation would reward shrinking w. Instead t is importance-sampled on
(0, 1] from p_c(t) = c t^(c - 1) (t = v^(1/c), v ~ U(0, 1], stratified over the batch), with one
c per row, c_b = stop_gradient(min_{l in row b} w_l) / 2 over the powers of the row's own tokens
(`time_power`), and the rates are divided by p_{c_b}(t): unbiased for the t_min = 0 NELBO (c_b is
a function of x_0 and w only, so E_{t ~ p_c}[g(t) / p_c(t)] = int_0^1 g(t) dt row by row; the
enumeration test checks it), and of finite variance (every masked position of the row has
w_l >= 2 c_b, so the second moment int t^(w_l - c_b - 1) dt < inf; the compensator's rates of
other values k enter as (w_k / c_b) t^(-c_b) times the same mask probability t^{w_l}). For
'value' the powers of ids absent from the row do not enter c: a min over all K powers (the first
version) let an id that never occurs in the data, whose w the compensator shrinks at every step,
drive c and t to 0 for every row (no position masked, a loss estimate of 0). This deviates from
both the paper (unspecified) and GenMD4 (uniform t on [1e-3, 1], antithetic, recon loss).

Gradient for w (`rloo_surrogate`). The NELBO depends on w through the rates (pathwise: autodiff)
and through the law q(z | x_0, t; w) of the discrete masks (score function). n =
`config.method.num_masks` >= 2 masks z_1..z_n are drawn at one shared t per sequence; with
f_i the per-sequence integrand and log q_i = sum_l [z_il = m] w_l log t + [z_il != m] log(1 - t^{w_l}),

    loss = (1/n) sum_i f_i + (1/n) sum_i sg(f_i - mean_{j != i} f_j) log q_i   (REINFORCE-LOO),

whose gradient is unbiased (Kool et al. 2019); the second term is added as `x - sg(x)`, so the
reported loss is the NELBO estimate. For n = 2 it is GenMD4's `0.5 sg(f_1 - f_2)(log q_1 - log q_2)`.
The network gets its gradient from the mean of the n integrands (GenMD4 also averages both; md4
issue #4 notes that this doubles the diffusion-loss samples). The value variant is GenMD4's estimator
with q's powers indexed by the clean token, w[x_0^l].

Chunked logits (`config.model.logits_chunk` = c > 0): the training loss and `nelbo_samples` take
the network's hidden states for the n B masked rows and compute the output projection and the
per-token NELBO (`losses.masked_nelbo_rates`) in rematerialised chunks of c positions
(`ChunkedHead`, `methods.chunked`): no `[n B, L, K]` logits or gradient exist whole. Exact, since
the integrand of position l reads only its logits row, x_0^l, z^l and its rate (a per-token rate
[n B, L] is chunked with the positions; the per-value rates [n B, 1, K] are passed whole); f,
log q and the REINFORCE term are formed afterwards from the [n, B, L] per-token values.

Sampling (`generate`). 'position': the samplers of the registry with the learned schedule
`schedules.PerTokenPolynomial(w)` in place of config.process's (`sampling.generate(...,
schedule=...)`, compiled once per sampler section with the parameters as an argument):
`config.sampler.name` = 'ordered_first_hitting' (sampling/ordered_first_hitting.py, the paper's
Algorithm 1 + FHS: T_l = u_l^(1/w_l), positions decoded in decreasing T_l, one network call per
token, exact for an exact denoiser), 'ancestral' or 'psi' (per-position alpha in their kernels);
others are refused (`validate_config`). 'value': the order depends on the values, so GenMD4's
ancestral sampler (`value_ancestral`, config.sampler.name = 'ancestral'): on a grid of
`config.sampler.num_steps` steps t -> s a masked token becomes k with probability
mu_k (t^{w_k} - s^{w_k}) / t^{w_k} and stays masked otherwise. samples_with_config_sampler is
False: the frontier sweeps samplers (first_hitting) that a per-position schedule does not have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from discrete_diffusion import losses, param_groups, processes, sampling, schedules
from discrete_diffusion import models as models_lib
from discrete_diffusion.methods import chunked, stratified
from discrete_diffusion.methods.base import (
    Batch,
    MethodBase,
    Params,
    compiled_sampler,
    token_weights,
    with_sampler,
)
from discrete_diffusion.sampling.categorical import categorical, transform_logits

Array = jax.Array
# denoise_fn(x_t [M, L], t [M]) -> denoiser logits [M, L, K]
DenoiseFn = Callable[[Array, Array], Array]

SCHEDULES = ("position", "value")
# config.sampler.name per schedule: the registry's per-position samplers; GenMD4's for 'value'
SAMPLERS = {"position": sampling.PER_POSITION_SAMPLERS, "value": ("ancestral",)}
DEFAULTS: dict[str, Any] = {
    "schedule": "position",  # 'position' (w [L]) | 'value' (w [K], GenMD4)
    "num_masks": 2,  # masks per sequence at a shared t (REINFORCE-LOO needs >= 2)
    "power_init": 1.0,  # initial w (1: the linear schedule for every position)
    "schedule_learning_rate": 1e-2,  # Adam on theta (w = softplus(theta)); no clipping, no warmup
}
TIME_POWER_FRACTION = 0.5  # c = fraction * min(w) for the time proposal p_c(t) = c t^(c-1)
_TINY = 1e-12


# ---- the schedule --------------------------------------------------------------------------
def powers(theta: Array) -> Array:
    """w = softplus(theta) > 0."""
    return jax.nn.softplus(theta)


def inverse_softplus(w: float | Array) -> Array:
    """theta with softplus(theta) = w (GenMD4's init log(e^w - 1))."""
    w = jnp.asarray(w, jnp.float32)
    return w + jnp.log(-jnp.expm1(-w))


def token_powers(w: Array, x0: Array, kind: str) -> Array:
    """The power of each token `[..., L]`: w_l ('position', w [L]) or w[x_0^l] ('value', w [K])."""
    if kind == "position":
        return jnp.broadcast_to(w, x0.shape)
    return jnp.take(w, x0)


def mask_probability(w_tok: Array, log_t: Array) -> Array:
    """1 - alpha_{t,l} = t^{w_l} = exp(w_l log t) (log t keeps tiny t exact)."""
    return jnp.exp(w_tok * log_t)


def log_mask_prob(masked: Array, w_tok: Array, log_t: Array, pad: Array | None = None) -> Array:
    """log q(z | x_0, t; w) `[...]` = sum_l pad_l ([masked] w_l log t + [clean] log(1 - t^{w_l}))."""
    a = w_tok * log_t
    safe = jnp.where(masked, -1.0, a)  # clean at t = 1 has probability 0 and is never drawn
    per = jnp.where(masked, a, jnp.log(-jnp.expm1(safe)))
    return jnp.sum(per if pad is None else per * pad, axis=-1)


def time_power(w_tok: Array, pad: Array | None = None) -> Array:
    """c_b = sg(min_{l: pad_l > 0} w_{b,l}) * TIME_POWER_FRACTION `[...]`, the exponent of row b's
    time proposal, from the powers of the row's own tokens w_tok `[..., L]` (`token_powers`).

    Only the row's tokens enter: the powers of vocabulary ids absent from the row ('value') do not
    move its time law (a min over all K powers let one unseen id, whose w the compensator keeps
    shrinking, send c and t to 0 for every row: no position masked). A row with no token
    (all pad) gets c = TIME_POWER_FRACTION (it contributes 0 whatever its t)."""
    present = jnp.ones(w_tok.shape, bool) if pad is None else pad > 0
    w_min = jnp.min(jnp.where(present, w_tok, jnp.inf), axis=-1)
    w_min = jnp.where(jnp.isfinite(w_min), w_min, 1.0)
    return jax.lax.stop_gradient(w_min) * TIME_POWER_FRACTION


def log_times(v: Array, c: Array) -> Array:
    """log t for t = v^(1/c), v in (0, 1]: t ~ p_c(t) = c t^(c - 1) on (0, 1]."""
    return jnp.log(jnp.maximum(v, _TINY)) / c


def rates(w: Array, kind: str, log_t: Array, c: Array, x0: Array) -> Array:
    """Importance-weighted rates r / p_c(t) = (w / t) / (c t^(c - 1)) = (w / c) t^(-c).

    'position': `[..., L]`; 'value': `[..., 1, K]` (one rate per clean value). log_t and c `[...]`
    (one proposal per row, `time_power`).
    """
    scale = jnp.exp(-c * log_t) / c  # 1 / (t p_c(t))
    if kind == "position":
        return token_powers(w, x0, kind) * scale[..., None]
    return w * scale[..., None, None]


def rloo_surrogate(f: Array, log_q: Array) -> Array:
    """REINFORCE leave-one-out term `[B]` for f, log_q `[n, B]` (n >= 2 masks at a shared t):

        s = (1/n) sum_i sg(f_i - (1/(n-1)) sum_{j != i} f_j) log q_i,   returned as s - sg(s)

    (value 0, gradient unbiased for d/dw E_q[f] minus the pathwise part)."""
    n = f.shape[0]
    if n < 2:
        raise ValueError(f"config.method.num_masks={n} must be >= 2 for the REINFORCE-LOO baseline")
    f = jax.lax.stop_gradient(f)
    baseline = (jnp.sum(f, axis=0, keepdims=True) - f) / (n - 1)
    s = jnp.mean((f - baseline) * log_q, axis=0)
    return s - jax.lax.stop_gradient(s)


@dataclasses.dataclass(frozen=True)
class ChunkedHead:
    """The output projection applied outside the network, in chunks of positions.

    With a head, `sequence_terms`' `denoise_fn` returns the final hidden states h `[M, L, D]`
    instead of logits, and logits_c = project(params, h_c) `[M, c, K]` (with the per-token NELBO)
    are computed over rematerialised chunks of `chunk` positions (`methods.chunked`)."""

    project: Callable[[Params, Array], Array]  # (out_params, h_c [M, c, D]) -> logits [M, c, K]
    params: Params  # the projection's parameters (passed whole to every chunk)
    chunk: int  # c > 0 positions per chunk


def _chunked_nelbo(head: ChunkedHead, h: Array, x0: Array, x_t: Array, mask_id: int,
                   r: Array) -> Array:
    """masked_nelbo_rates `[M, L]` of logits = project(h) `[M, L, K]`, chunk by chunk.

    h `[M, L, D]`, x0 and x_t `[M, L]`; r `[M, L]` (a rate per token, chunked with the positions)
    or `[M, 1, K]` (a rate per value, passed whole to every chunk)."""
    per_value = r.ndim == 3

    def chunk(shared, h_c, x0_c, x_t_c, *r_c):
        out_params, r_v = shared
        logits = head.project(out_params, h_c)  # [M, c, K] float32
        return losses.masked_nelbo_rates(logits, x0_c, x_t_c, mask_id, r_v if per_value else r_c[0])

    shared = (head.params, r if per_value else None)
    per_pos = (h, x0, x_t) if per_value else (h, x0, x_t, r)
    return chunked.position_chunks(chunk, head.chunk, shared, *per_pos)


def sequence_terms(
    w: Array, kind: str, denoise_fn: DenoiseFn, x0: Array, v: Array, u: Array,
    mask_id: int, pad: Array | None = None, head: ChunkedHead | None = None,
) -> tuple[Array, Array, Array]:
    """(f [n, B], log_q [n, B], per_token [n, B, L]) at t = v^(1/c) per row and masks u < t^w.

    x0 `[B, L]`, v `[B]` in (0, 1], u `[n, B, L]` uniforms; f_i = sum_l pad_l per_token_il is the
    importance-weighted NELBO integrand of mask i (an unbiased estimate of the sequence NELBO).
    With `head` (`ChunkedHead`), denoise_fn returns hidden states `[n B, L, D]` and the projection
    and per-token NELBO run in chunks of positions: the same values, no `[n B, L, K]` logits.
    """
    n, B, L = u.shape
    w_tok = token_powers(w, x0, kind)  # [B, L]
    c = time_power(w_tok, pad)  # [B]
    log_t = log_times(v, c)  # [B]
    masked = u < mask_probability(w_tok, log_t[:, None])  # [n, B, L]
    x_t = jnp.where(masked, mask_id, x0[None]).astype(jnp.int32)
    t_in = jnp.broadcast_to(jnp.exp(log_t), (n, B)).reshape(n * B)
    r = rates(w, kind, log_t, c, x0)
    if head is None:
        logits = denoise_fn(x_t.reshape(n * B, L), t_in).reshape(n, B, L, -1)
        per_tok = losses.masked_nelbo_rates(logits, x0[None], x_t, mask_id, r[None])
    else:
        h = denoise_fn(x_t.reshape(n * B, L), t_in)  # [n B, L, D]
        r_rows = jnp.broadcast_to(r[None], (n,) + r.shape).reshape((n * B,) + r.shape[1:])
        x0_rows = jnp.broadcast_to(x0[None], (n, B, L)).reshape(n * B, L)
        per_tok = _chunked_nelbo(head, h, x0_rows, x_t.reshape(n * B, L), mask_id,
                                 r_rows).reshape(n, B, L)
    pad = jnp.ones(x0.shape, jnp.float32) if pad is None else pad
    per_tok = per_tok * pad
    log_q = log_mask_prob(masked, w_tok[None], log_t[None, :, None], pad)
    return jnp.sum(per_tok, axis=-1), log_q, per_tok


def order_nll(denoise_fn: DenoiseFn, w: Array, x0: Array, u: Array, mask_id: int) -> Array:
    """-log p(x_0) `[B]` along one decoding order per row: the Plackett-Luce side of the NELBO.

    With T_l = u_l^(1/w_l) (u `[B, L]` uniforms) the order pi decodes positions by decreasing T
    (pi ~ PL(w)), and the result is sum_i -log mu(x_0^{pi(i)} | x_0^{pi(<i)}), one network call
    per position (at t = T_{pi(i)}). For a time-independent denoiser its mean over u is the
    position NELBO (Garg et al. Prop. 3.1; the enumeration test checks the mixture), with no
    importance weight in t, so it has a lower variance than `nelbo_samples`. With the same u for
    two schedules it gives paired estimates (common random numbers). Deviation: for a
    time-conditioned network this is not the NELBO (the times T are the ones the network sees,
    but the NELBO also integrates over the times between events).
    """
    B, L = x0.shape
    rows = jnp.arange(B)
    log_T = jnp.log(jnp.maximum(u, _TINY)) / w
    order = jnp.argsort(-log_T, axis=-1)

    def body(carry, i):
        x, total = carry
        pos = order[:, i]
        logits = denoise_fn(x, jnp.exp(jnp.minimum(log_T[rows, pos], 0.0)))
        lp = jax.nn.log_softmax(logits[rows, pos].astype(jnp.float32), axis=-1)
        total = total - jnp.take_along_axis(lp, x0[rows, pos][:, None], axis=-1)[:, 0]
        x = x.at[rows, pos].set(x0[rows, pos])
        return (x, total), None

    x = jnp.full((B, L), mask_id, jnp.int32)
    (_, total), _ = jax.lax.scan(body, (x, jnp.zeros((B,), jnp.float32)), jnp.arange(L))
    return total


# ---- samplers ------------------------------------------------------------------------------
def _settings(sampler_config: Any) -> dict:
    get = (lambda k, d: sampler_config.get(k, d)) if sampler_config is not None else (lambda k, d: d)
    return {"temperature": float(get("temperature", 1.0)), "top_k": int(get("top_k", 0)),
            "top_p": float(get("top_p", 1.0)), "categorical": get("categorical", "exact"),
            "num_steps": int(get("num_steps", 128))}


def value_ancestral(
    key: Array, denoise_fn: DenoiseFn, w: Array, num_samples: int, seq_len: int, mask_id: int, *,
    num_steps: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
    method: str = "exact", prompt_tokens: Array | None = None, prompt_mask: Array | None = None,
) -> tuple[Array, Array]:
    """GenMD4's ancestral sampler for the value schedule: (tokens [N, L], nfe = num_steps).

    Grid t_j = 1 - j / S; from t to s a masked token becomes k w.p. mu_k (t^{w_k} - s^{w_k}) /
    t^{w_k} (the exact reverse kernel given x_0 = k, mixed over the denoiser mu), else stays
    masked; at s = 0 every masked token is drawn from mu.
    """
    K = w.shape[0]
    given = (jnp.zeros((num_samples, seq_len), bool) if prompt_mask is None
             else prompt_mask.astype(bool))
    x = jnp.full((num_samples, seq_len), mask_id, jnp.int32)
    if prompt_tokens is not None:
        x = jnp.where(given, prompt_tokens, x).astype(jnp.int32)

    def body(x, j):
        t = 1.0 - j / num_steps
        s = 1.0 - (j + 1) / num_steps
        logits = denoise_fn(x, jnp.full((num_samples,), t, jnp.float32))
        mu = jnp.exp(transform_logits(logits, temperature, top_k, top_p))  # [N, L, K]
        frac = 1.0 - jnp.where(s > 0, (jnp.maximum(s, _TINY) / t) ** w, 0.0)  # [K]
        p_k = mu * frac
        p_stay = jnp.maximum(1.0 - jnp.sum(p_k, -1, keepdims=True), 0.0)
        probs = jnp.concatenate([p_k, p_stay], axis=-1)
        draw = categorical(jax.random.fold_in(key, j), jnp.log(jnp.maximum(probs, 0.0)), method=method)
        draw = jnp.where(draw == K, mask_id, draw)
        return jnp.where(x == mask_id, draw, x).astype(jnp.int32), None

    x, _ = jax.lax.scan(body, x, jnp.arange(num_steps))
    return x, jnp.array(num_steps, jnp.int32)


# ---- the method ----------------------------------------------------------------------------
class LearnedOrder(MethodBase):
    """Masked diffusion with a learned per-position ('position') or per-value ('value') schedule."""

    name = "learned_order"
    partition_rules = ((r"(^|/)schedule/theta$", P()),)
    config_declared = {"method": {k: (type(v), v) for k, v in DEFAULTS.items()}}
    samples_with_config_sampler = False

    @staticmethod
    def validate_config(config: Any) -> None:
        """config.method.schedule and the sampler it has (errors name the field and the allowed
        values): 'position' samples with `sampling.PER_POSITION_SAMPLERS`, 'value' with
        GenMD4's ancestral sampler ('ancestral')."""
        section = config.get("method", None)
        kind = section.get("schedule", DEFAULTS["schedule"]) if section is not None else "position"
        if kind not in SCHEDULES:
            raise ValueError(f"config.method.schedule={kind!r} is not one of {list(SCHEDULES)}")
        sampler = config.get("sampler", None)
        name = sampler.get("name", "ancestral") if sampler is not None else "ancestral"
        if name not in SAMPLERS[kind]:
            raise ValueError(f"config.sampler.name={name!r} is not one of {list(SAMPLERS[kind])} "
                             f"for config.method.name='learned_order' with config.method.schedule="
                             f"{kind!r}")

    def __init__(self, config: Any, num_classes: int):
        self.validate_config(config)
        self.config = config
        section = config.get("method", None)
        get = (lambda k: section.get(k, DEFAULTS[k])) if section is not None else DEFAULTS.get
        self.kind = get("schedule")
        self.num_masks = int(get("num_masks"))
        if self.num_masks < 2:
            raise ValueError(f"config.method.num_masks={self.num_masks} must be >= 2 "
                             "(the REINFORCE leave-one-out baseline needs two masks)")
        self.power_init = float(get("power_init"))
        if not self.power_init > 0:
            raise ValueError(f"config.method.power_init={self.power_init} must be > 0")
        self.schedule_learning_rate = float(get("schedule_learning_rate"))
        if config.process.name != "masked":
            raise ValueError(f"config.method.name='learned_order' needs config.process.name="
                             f"'masked', got {config.process.name!r}")
        self.k = num_classes
        self.proc = processes.masked(num_classes)
        self.mask_id = self.proc.mask_id
        self.logits_chunk = chunked.logits_chunk(config)
        self.model = models_lib.get_model(config, num_classes, self.proc.num_states)

    # -- parameters
    def init(self, key: Array, example_batch: Batch) -> Params:
        seq_len = example_batch["tokens"].shape[-1]
        inputs = models_lib.example_inputs(self.model, 1, seq_len)
        size = seq_len if self.kind == "position" else self.k
        theta = jnp.full((size,), inverse_softplus(self.power_init), jnp.float32)
        return {"network": self.model.init({"params": key}, **inputs)["params"],
                "schedule": {"theta": theta}}

    def optimizer(self, training_config: Any,
                  default: optax.GradientTransformation) -> optax.GradientTransformation:
        """Adam(schedule_learning_rate) on params['schedule'], the config's optimizer elsewhere."""
        del training_config
        return param_groups.by_top_level_key({"schedule": optax.adam(self.schedule_learning_rate)}, default)

    def powers(self, params: Params) -> Array:
        """w = softplus(theta): [L] or [K]."""
        return powers(params["schedule"]["theta"])

    def denoise_fn(self, params: Params, *, train: bool = False,
                   key: Array | None = None, return_hidden: bool = False) -> DenoiseFn:
        """(x_t [M, L], t [M]) -> denoiser logits [M, L, K] (or, with `return_hidden`, the final
        hidden states [M, L, D] whose `self.model.project_hidden` are those logits)."""
        rngs = {"dropout": key} if (train and key is not None) else {}
        hidden = {"return_hidden": True} if return_hidden else {}

        def denoise(x_t: Array, t: Array, output_positions: Array | None = None) -> Array:
            # output_positions [B, P]: logits [B, P, K] there only (the samplers' network_at)
            at = {} if output_positions is None else {"output_positions": output_positions}
            return self.model.apply({"params": params["network"]}, x_t, t, train=train,
                                    rngs=rngs, **at, **hidden)

        return denoise

    def _terms(self, params: Params, w: Array, x0: Array, v: Array, u: Array, pad: Array, *,
               train: bool = False, key: Array | None = None) -> tuple[Array, Array, Array]:
        """`sequence_terms` with this method's network; with `config.model.logits_chunk` = c > 0
        through hidden states and a `ChunkedHead` of c positions."""
        if self.logits_chunk <= 0:
            return sequence_terms(w, self.kind, self.denoise_fn(params, train=train, key=key),
                                  x0, v, u, self.mask_id, pad)
        head = ChunkedHead(self.model.project_hidden, chunked.head_params(params), self.logits_chunk)
        denoise = self.denoise_fn(params, train=train, key=key, return_hidden=True)
        return sequence_terms(w, self.kind, denoise, x0, v, u, self.mask_id, pad, head=head)

    # -- training
    def prepare(self, batch: Batch, key: Array) -> Batch:
        """Adds v [B] (stratified over the batch, in (0, 1]; t = v^(1/c) in `loss`) and the
        uniforms u [num_masks, B, L] of the masks (z = mask where u < t^w)."""
        k_t, k_u, _ = jax.random.split(key, 3)
        B, L = batch["tokens"].shape
        v = 1.0 - stratified.batch_times(k_t, B, 0.0)
        u = jax.random.uniform(k_u, (self.num_masks, B, L))
        return {**batch, "v": v, "u": u}

    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool = True,
             step: Array | None = None) -> tuple[Array, dict]:
        del step
        if "u" not in batch:
            batch = self.prepare(batch, key)
        k_drop = jax.random.split(key, 3)[2]
        w = self.powers(params)
        pad = token_weights(batch)
        f, log_q, per_tok = self._terms(params, w, batch["tokens"], batch["v"], batch["u"], pad,
                                        train=train, key=k_drop)
        B, L = batch["tokens"].shape
        loss = jnp.sum(jnp.mean(f, axis=0) + rloo_surrogate(f, log_q)) / (B * L)
        return loss, {"nelbo": jnp.mean(per_tok, axis=0), "weights": pad,
                      "metrics": self._metrics(w)}

    def _metrics(self, w: Array) -> dict[str, Array]:
        w = jax.lax.stop_gradient(w)
        if self.kind == "value":
            return {"w_min": jnp.min(w), "w_max": jnp.max(w)}
        pos = jnp.arange(w.shape[0], dtype=jnp.float32)
        lw = jnp.log(w)
        corr = jnp.sum((pos - pos.mean()) * (lw - lw.mean())) / jnp.maximum(
            jnp.sqrt(jnp.sum((pos - pos.mean()) ** 2) * jnp.sum((lw - lw.mean()) ** 2)), _TINY)
        # w_order_corr < 0: w decreases along the sequence, i.e. left-to-right decoding
        return {"w_first": w[0], "w_last": w[-1], "w_order_corr": corr}

    # -- evaluation
    def nelbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int) -> Array:
        """[B, num_t] per-sequence NELBO estimates (nats), t = v^(1/c) with v stratified per row."""
        x0 = batch["tokens"]
        B, L = x0.shape
        pad = token_weights(batch)
        w = self.powers(params)
        k_t, k_u = jax.random.split(key)
        v = 1.0 - stratified.low_discrepancy_times(k_t, B, num_t, 0.0)  # [B, num_t]
        keys = jax.random.split(k_u, num_t)

        def one(args):
            k, v_j = args
            u = jax.random.uniform(k, (1, B, L))
            return self._terms(params, w, x0, v_j, u, pad)[0][0]

        return jax.lax.map(one, (keys, v.T)).T

    # -- sampling
    def schedule(self, params: Params) -> schedules.PerTokenPolynomial:
        """The learned per-position schedule alpha_{t,l} = 1 - t^{w_l} ('position' only)."""
        return schedules.PerTokenPolynomial(self.powers(params))

    def generate(self, params: Params, key: Array, num_samples: int, seq_len: int,
                 sampler_config: Any = None, **prompt: Array) -> sampling.SampleResult:
        """'position': the sampler of config.sampler.name (`SAMPLERS['position']`) with the
        learned schedule; one jitted sampler per (sampler section, N, L) without a prompt,
        `sampling.generate` with one. 'value': `value_ancestral` (config.sampler.num_steps calls;
        reads temperature, top_k, top_p, categorical)."""
        config = with_sampler(self.config, sampler_config)
        self.validate_config(config)
        if self.kind == "position":
            n_w = params["schedule"]["theta"].shape[0]
            if n_w != seq_len:
                raise ValueError(f"the 'position' schedule has {n_w} powers; cannot sample "
                                 f"seq_len={seq_len}")
            if prompt:
                return sampling.generate(key, self.denoise_fn(params), config, num_samples,
                                         seq_len, schedule=self.schedule(params), **prompt)
            fn = compiled_sampler(self, config, num_samples, seq_len,
                                  lambda params, key: (self.denoise_fn(params), key),
                                  variant="per_position", schedule=self.schedule)
            tokens, nfe = fn(params, key)
            return sampling.SampleResult(tokens=tokens, nfe=int(nfe))
        s = _settings(config.get("sampler", None))
        w = self.powers(params)
        denoise = self.denoise_fn(params)
        opts = {"temperature": s["temperature"], "top_k": s["top_k"], "top_p": s["top_p"],
                "method": s["categorical"], **prompt}
        run = jax.jit(lambda k: value_ancestral(k, denoise, w, num_samples, seq_len,
                                                self.mask_id, num_steps=s["num_steps"], **opts))
        tokens, nfe = run(key)
        return sampling.SampleResult(tokens=tokens, nfe=int(nfe))


__all__ = ["DEFAULTS", "SAMPLERS", "SCHEDULES", "ChunkedHead", "LearnedOrder", "inverse_softplus",
           "log_mask_prob", "order_nll", "powers", "rates", "rloo_surrogate", "sequence_terms",
           "value_ancestral"]
