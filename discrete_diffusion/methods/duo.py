"""The `duo` method: uniform-state diffusion trained through its Gaussian dual (Duo's curriculum).

References: Sahoo et al., "The Diffusion Duality" (Duo, ICML 2025) sections 3-4 and Deschenaux,
Gulcehre, Sahoo, "The Diffusion Duality, Chapter II" (Duo II, ICLR 2026); digest in
shared/papers/uniform_duo_mdlm.md sections 3.3-3.4 and 4.2. The math lives in
`discrete_diffusion.duality` (T, relaxed samples, embedding bag); this module is the training
recipe.

The process. A plain uniform process (config.process: name 'uniform', any schedule alpha_t); its
network is Duo's x_theta, read by the plug-in bridge as the leave-one-out posterior
(config.model.parameterization 'loo'; 'denoiser' is converted exactly). Evaluation
(`nelbo_samples`) and sampling (`generate`, any uniform sampler of `sampling`) are those of the
'diffusion' method on that process: Duo's discrete model is a plain uniform diffusion model.

The curriculum (steps 0 .. curriculum_steps - 1; Duo eq. 19-21). Gaussian latents of the one-hot
data, w = a e_x0 + sqrt(1 - a^2) eps, at the Gaussian signal level of Duo's reference code,

    gamma_t = gamma_min + t (gamma_max - gamma_min),   a_t = sqrt(sigmoid(-gamma_t)),      (1)
    t ~ U[0, 1] (stratified over the batch),

i.e. log SNR = -gamma linear in t over the curriculum window [gamma_min, gamma_max] (Duo:
`DUO._q_xt_gaussian`, `gamma_min/max` in its scripts: OWT [-3.55, -1.85], LM1B [-3.5, -1.75],
which put alpha_t = T(a_t) in [0.05, 0.95]; when unset here, gamma_min/max are computed so that
T(a) spans exactly [0.05, 0.95] for this K, as Duo's authors advise for new tokenizers). The
uniform process it projects to has

    alpha_t = T(a_t),    alpha'_t = T'(a_t) a'_t,    a'_t = -(gamma_max - gamma_min) a_t (1 - a_t^2) / 2

(chain rule; `GaussianDualSchedule`; T and T' from `duality`, quadrature. Duo's reference code
reads T from a 1e5-point lookup table and takes alpha'_t by a forward finite difference in gamma;
we use the exact derivative). The per-token objective is Duo's relaxed loss (eq. 21):

    z_t = argmax w,   h = softmax(w / tau) @ E  (the network input, instead of E[z_t]),
    loss = uniform_nelbo_rb(alpha_t, alpha'_t; x_theta(h, t_net), x0, z_t)                   (2)

(the Rao-Blackwellized uniform NELBO integrand of Duo eq. 17 at the discrete z_t; through the
parameterization conversion when the network is a denoiser). As tau -> 0, h -> E[z_t] and (2) is
the discrete NELBO integrand at alpha_t = T(a_t) sample by sample (tested); z_t has exactly the
uniform marginal at alpha_t (`duality.relaxed_sample`), so (2) at tau = 0 is an unbiased estimate
of the window's part of the NELBO, int f dalpha over alpha in [T(a(1)), T(a(0))]. With tau > 0 it
is biased but much lower-variance (Duo section 4.1). The network's time input is
t_net = schedule.inverse(alpha_t) of config.process's schedule: the time at which the plain
uniform process has the same alpha (Duo conditions its DiT on sigma = -log alpha_t of the
discrete process for the same reason), so one network serves the curriculum, the discrete phase
and the samplers, which see the plain uniform process with alpha = T(a_t) at that time.

Temperature: tau (Duo: 1e-3) during the curriculum, or, with tau_end set, annealed log-linearly
from tau to tau_end over it (Duo's `gumbel_tau_log10_start/end`; its scripts keep both at -3).

Top-k (Duo II's efficient curriculum, config.method.top_k = k): the input is the embedding bag of
x0 and the k largest of the K - 1 noise coordinates (`duality.relaxed_sample(top_k=k)`, exact
order statistics, the tail's mass folded into the softmax normaliser), fed to the transformer as
(soft_ids, soft_weights) [B, L, k + 1]; never a K-wide array. As in Duo II, the bag leaves the
tail's own embeddings out (its weights sum to 1 - tail mass). z_t is the exact argmax w (Duo II's
code sets z_t = x0 whenever x0 is among the top k, which is wrong for k > 1; we follow the paper's
definition, see `duality.relaxed_sample`). top_k None: the dense softmax (soft_weights [B, L, K]
@ E), Duo I.

After the curriculum (step >= curriculum_steps), and whenever train=False, the loss is the
discrete one of the 'diffusion' method: t ~ U[t_min, 1] stratified, x_t ~ q_t of config.process,
the same NELBO (Duo: "then tau = 0, plain USDM training with the RB NELBO and alpha_t = 1 - t").
With curriculum_steps = 0 the method reproduces the 'diffusion' method's losses exactly (tested).

Chunked logits (`config.model.logits_chunk` = c > 0): both phases compute the output projection
and the per-token loss in rematerialised chunks of c positions (`methods.chunked`): the discrete
phase through the 'diffusion' method's `_chunked_losses`, the curriculum through
`_relaxed_chunks`; no `[B, L, K]` logits or gradient exist whole (exact; tested). Only the
output side is chunked: the curriculum's network INPUT, the soft weights [B, L, m], enters the
transformer whole, and with the dense input (top_k None, m = K) that is itself a `[B, L, K]`
array (no gradient flows into it: it is stop_gradient'ed); with top_k = k it is `[B, L, k + 1]`.

aux: 'nelbo' [B, L] is the per-token objective (during the curriculum, the windowed relaxed loss
(2), not a bound), 'weights' the padding mask; metrics 'curriculum' (1 while in it) and 'tau'.

Config fields (config.method.*, validated here; defaults are the paper's):
    name              'duo'
    curriculum_steps  int >= 0, or None: half of config.training.num_steps (Duo: 500k of 1M)
    tau               float >= 0, default 1e-3 (0: the hard one-hot input, the tau -> 0 limit)
    tau_end           None (constant tau) or float > 0 (log-linear anneal; needs tau > 0)
    top_k             None (dense input) or int in [1, K - 1] (Duo II's efficient curriculum)
    gamma_min         float or None; gamma_max float or None (both or neither; gamma_min <
                      gamma_max); None: T(a) spans [0.05, 0.95]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import duality, losses, processes
from discrete_diffusion.methods import chunked
from discrete_diffusion.methods.base import Batch, Params, token_weights
from discrete_diffusion.methods.diffusion import Diffusion

Array = jax.Array

DEFAULT_TAU = 1e-3
# config.method's fields: (type, default); None defaults are derived in `Duo.__init__`
# (curriculum_steps: num_steps // 2, gamma_min/max: `default_gamma_window`) or mean 'off'.
DECLARED: dict[str, tuple[type, Any]] = {
    "curriculum_steps": (int, None), "tau": (float, DEFAULT_TAU), "tau_end": (float, None),
    "top_k": (int, None), "gamma_min": (float, None), "gamma_max": (float, None),
}
FIELDS = ("name", *DECLARED)
# The uniform alphas spanned by the curriculum window when gamma_min/max are not given (Duo keeps
# alpha_t = T(a_t) in about [0.05, 0.95]; its OWT/LM1B gammas give [0.049, 0.945] / [0.049, 0.942]).
ALPHA_WINDOW = (0.05, 0.95)


def gamma_from_alpha_gauss(a: Array) -> Array:
    """gamma = log((1 - a^2) / a^2), the inverse of a = sqrt(sigmoid(-gamma))."""
    a = jnp.asarray(a, jnp.float32)
    return jnp.log1p(-a * a) - 2.0 * jnp.log(a)


def default_gamma_window(num_classes: int) -> tuple[float, float]:
    """(gamma_min, gamma_max) with T(a(gamma_min)) = 0.95 and T(a(gamma_max)) = 0.05 for K classes
    (bisection of T; K = 50257: (-3.565, -1.855), Duo's OWT script: (-3.55, -1.85))."""
    hi, lo = ALPHA_WINDOW[1], ALPHA_WINDOW[0]
    a = duality.inverse_diffusion_transform(jnp.array([hi, lo]), num_classes)
    g = gamma_from_alpha_gauss(a)
    return float(g[0]), float(g[1])


@dataclasses.dataclass(frozen=True)
class GaussianDualSchedule:
    """The uniform-process schedule alpha_t = T(a_t) of Duo's Gaussian level (1) (module doc).

    t in [0, 1] is the curriculum time: gamma_t = gamma_min + t (gamma_max - gamma_min),
    a_t = sqrt(sigmoid(-gamma_t)). Elementwise, like the schedules of `schedules`:
        alpha(t)   = T(a_t)
        dalpha(t)  = T'(a_t) a'_t,   a'_t = -(gamma_max - gamma_min) a_t (1 - a_t^2) / 2
        inverse(al) = (gamma(T^{-1}(al)) - gamma_min) / (gamma_max - gamma_min)
    (d a / d gamma = -a (1 - a^2) / 2 since d a^2 / d gamma = -a^2 (1 - a^2)). Used with
    `processes.UniformProcess(K, schedule)` so `losses.uniform_nelbo_rb` reads alpha_t = T(a_t)
    and its chain-rule derivative.
    """

    num_classes: int
    gamma_min: float
    gamma_max: float
    name: str = "duo_gaussian"

    def gamma(self, t: Array) -> Array:
        return self.gamma_min + jnp.asarray(t, jnp.float32) * (self.gamma_max - self.gamma_min)

    def alpha_gauss(self, t: Array) -> Array:
        """a_t = sqrt(sigmoid(-gamma_t))."""
        return jnp.sqrt(jax.nn.sigmoid(-self.gamma(t)))

    def dalpha_gauss(self, t: Array) -> Array:
        """d a_t / dt = -(gamma_max - gamma_min) a_t (1 - a_t^2) / 2, (1 - a^2) = sigmoid(gamma)."""
        g = self.gamma(t)
        return -0.5 * (self.gamma_max - self.gamma_min) * jnp.sqrt(jax.nn.sigmoid(-g)) * jax.nn.sigmoid(g)

    def alpha(self, t: Array) -> Array:
        return duality.diffusion_transform(jax.lax.stop_gradient(self.alpha_gauss(t)), self.num_classes)

    def dalpha(self, t: Array) -> Array:
        a = jax.lax.stop_gradient(self.alpha_gauss(t))
        return duality.diffusion_transform_derivative(a, self.num_classes) * self.dalpha_gauss(t)

    def inverse(self, alpha: Array) -> Array:
        a = duality.inverse_diffusion_transform(alpha, self.num_classes)
        return (gamma_from_alpha_gauss(a) - self.gamma_min) / (self.gamma_max - self.gamma_min)


def _field_error(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"config.method.{field}={value!r} must be {allowed}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class Duo(Diffusion):
    """Duo: uniform diffusion with the Gaussian-relaxed curriculum, then the discrete NELBO."""

    name = "duo"
    samples_with_config_sampler = True
    config_declared = {"method": DECLARED}

    def __init__(self, config: Any, num_classes: int):
        if config.process.get("name", None) != "uniform":
            raise ValueError(f"config.process.name={config.process.get('name', None)!r} is not one of "
                             "['uniform'] (config.method.name='duo' trains a uniform-state process)")
        loss = config.training.get("loss", "elbo")
        if loss != "elbo":
            raise ValueError(f"config.training.loss={loss!r} is not one of ['elbo'] for "
                             "config.method.name='duo' (the curriculum relaxes the NELBO)")
        super().__init__(config, num_classes)
        if self.model.noise_input:
            raise ValueError("config.model.noise_input must be False for config.method.name='duo'")
        self.num_classes = int(num_classes)
        mc = config.get("method", None) or {}
        unknown = sorted(set(mc.keys()) - set(FIELDS))
        if unknown:
            raise ValueError(f"config.method.{unknown[0]} is not a field of config.method.name='duo' "
                             f"(allowed: {list(FIELDS)})")
        K = self.num_classes

        steps = mc.get("curriculum_steps", None)
        if steps is None:
            steps = int(config.training.get("num_steps", 0)) // 2
        elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise _field_error("curriculum_steps", steps, "None or an int >= 0")
        self.curriculum_steps = int(steps)

        tau = mc.get("tau", DEFAULT_TAU)
        if not _is_number(tau) or tau < 0:
            raise _field_error("tau", tau, "a number >= 0")
        tau_end = mc.get("tau_end", None)
        if tau_end is not None and (not _is_number(tau_end) or tau_end <= 0 or tau <= 0):
            raise _field_error("tau_end", tau_end, "None or a number > 0 (annealing also needs "
                               f"config.method.tau > 0, got {tau!r})")
        self.tau, self.tau_end = float(tau), None if tau_end is None else float(tau_end)

        top_k = mc.get("top_k", None)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or not 1 <= top_k <= K - 1):
            raise _field_error("top_k", top_k, f"None (dense) or an int in [1, num_classes - 1 = {K - 1}]")
        self.top_k = top_k

        g_min, g_max = mc.get("gamma_min", None), mc.get("gamma_max", None)
        if (g_min is None) != (g_max is None):
            raise ValueError(f"config.method.gamma_min={g_min!r} and config.method.gamma_max={g_max!r} "
                             "must be both None or both numbers")
        if g_min is None:
            g_min, g_max = default_gamma_window(K)
        for field, value in (("gamma_min", g_min), ("gamma_max", g_max)):
            if not _is_number(value) or not math.isfinite(value):
                raise _field_error(field, value, "None or a finite number")
        if not g_min < g_max:
            raise _field_error("gamma_min", g_min, f"< config.method.gamma_max={g_max!r}")
        self.dual = GaussianDualSchedule(K, float(g_min), float(g_max))
        self.dual_proc = processes.UniformProcess(K, self.dual)

    # -- the curriculum
    def tau_at(self, step: Array) -> Array:
        """tau, or log-linear from tau to tau_end over the curriculum (Duo `_compute_gumbel_tau_inverse`)."""
        if self.tau_end is None:
            return jnp.asarray(self.tau, jnp.float32)
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(self.curriculum_steps, 1), 0.0, 1.0)
        return jnp.exp(math.log(self.tau) + frac * (math.log(self.tau_end) - math.log(self.tau)))

    def prepare(self, batch: Batch, key: Array) -> Batch:
        """The 'diffusion' method's (t, x_t, extras), plus the curriculum's randomness per row:
        duo_t [B] (the same stratified draw mapped to [0, 1): (t - t_min) / (1 - t_min)) and
        duo_key [B] keys for the Gaussian latents, so that micro-batches see the noise of the whole
        batch (gradient accumulation changes nothing)."""
        out = super().prepare(batch, key)
        B = batch["tokens"].shape[0]
        duo_t = jnp.clip((out["t"] - self.t_min) / (1.0 - self.t_min), 0.0, 1.0)
        duo_key = jax.random.split(jax.random.fold_in(key, 0x0D0), B)
        return {**out, "duo_t": duo_t, "duo_key": duo_key}

    def relaxed(self, params: Params, batch: Batch, key: Array, *, train: bool, tau: Array) -> dict:
        """The curriculum's per-token loss (2) on a prepared batch, and what it is made of:
        {'loss' [B, L], 'z_t' [B, L], 'alpha' [B] (= T(a_t)), 't_net' [B], 'input_mass' [B, L]
        (the bag's total weight: 1 - tail mass; 1 when dense)}."""
        x0, t_c = batch["tokens"], batch["duo_t"]
        a = self.dual.alpha_gauss(t_c)  # [B]
        K, top_k = self.num_classes, self.top_k

        def one_row(k, x, a_row):  # x [L], a_row []
            return duality.relaxed_sample(k, x, a_row, K, tau=tau, top_k=top_k)

        z_t, ids, weights = jax.vmap(one_row)(batch["duo_key"], x0, a)  # [B, L], [B, L, m] x 2
        weights = jax.lax.stop_gradient(weights)
        alpha = self.dual.alpha(t_c)  # [B]
        t_net = jnp.clip(self.proc.schedule.inverse(alpha), 0.0, 1.0)
        labels = self._label_inputs(batch, train, jax.random.fold_in(key, 1))
        soft_ids = None if top_k is None else ids
        rngs = {"dropout": key} if train else {}
        net = dict(train=train, rngs=rngs, soft_ids=soft_ids, soft_weights=weights, **labels)
        if self.logits_chunk > 0:
            h = self.model.apply({"params": params["network"]}, None, t_net, return_hidden=True,
                                 **net)  # [B, L, D]
            loss = self._relaxed_chunks(params, h, x0, z_t, t_c)
        else:
            logits = self.model.apply({"params": params["network"]}, None, t_net, **net)
            loss = losses.nelbo_per_token(self.dual_proc, self.parameterization, logits, x0, z_t,
                                          t_c[:, None])
        return {"loss": loss, "z_t": z_t, "alpha": alpha, "t_net": t_net,
                "input_mass": jnp.sum(weights, -1)}

    def _relaxed_chunks(self, params: Params, h: Array, x0: Array, z_t: Array,
                        t_c: Array) -> Array:
        """The relaxed loss (2) `[B, L]` from the final hidden states h `[B, L, D]` in chunks of
        `logits_chunk` positions (`methods.chunked`): logits_c = h_c W + b -> conversion ->
        uniform_nelbo_rb of `dual_proc` at (x0_c, z_t_c, t_c), each chunk rematerialised."""
        out_params = chunked.head_params(params)

        def chunk(shared, h_c, x0_c, z_c):
            out_params, t_c = shared
            logits = self.model.project_hidden(out_params, h_c)  # [B, c, K] float32
            return losses.nelbo_per_token(self.dual_proc, self.parameterization, logits, x0_c,
                                          z_c, t_c[:, None])

        return chunked.position_chunks(chunk, self.logits_chunk, (out_params, t_c), h, x0, z_t)

    # -- the objective
    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool = True,
             step: Array | None = None) -> tuple[Array, dict]:
        if "duo_key" not in batch:
            batch = self.prepare(batch, key)
        k_loss = jax.random.split(key, 3)[2]
        step = jnp.zeros((), jnp.int32) if step is None else jnp.asarray(step)
        tau = self.tau_at(step)

        def discrete(_):
            return self._per_token(params, batch, k_loss, train)[0]

        def curriculum(_):
            return self.relaxed(params, batch, k_loss, train=train, tau=tau)["loss"]

        if train and self.curriculum_steps > 0:
            in_curriculum = step < self.curriculum_steps
            per_token = jax.lax.cond(in_curriculum, curriculum, discrete, None)
        else:
            in_curriculum = jnp.zeros((), bool)
            per_token = discrete(None)
        w = token_weights(batch)
        B, L = batch["tokens"].shape
        metrics = {"curriculum": in_curriculum.astype(jnp.float32), "tau": tau}
        return jnp.sum(per_token * w) / (B * L), {"nelbo": per_token * w, "weights": w,
                                                  "metrics": metrics}

    # nelbo_samples and generate: the 'diffusion' method's, on config.process (module docstring)
    nelbo_samples = Diffusion.nelbo_samples
    generate = Diffusion.generate


__all__ = ["ALPHA_WINDOW", "DECLARED", "FIELDS", "Duo", "GaussianDualSchedule", "default_gamma_window",
           "gamma_from_alpha_gauss"]
