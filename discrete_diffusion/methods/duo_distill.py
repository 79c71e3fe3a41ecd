"""The `duo_distill` method: Duo's discrete consistency distillation (DCD) of a uniform diffusion
model into a few-step sampler.

Reference: Sahoo et al., "The Diffusion Duality" (Duo, ICML 2025) section 4.2 and Alg. 1; digest in
shared/papers/uniform_duo_mdlm.md section 3.6 (code: duo/algo.py:Distillation, scripts/distil_owt.sh).

Parameters. params = {'network': the student, 'teacher': a frozen copy}. Both start from the
network of a trained uniform-diffusion run (config.method.teacher_workdir: a 'duo', 'diffusion'
(uniform process) or 'duo_distill' run of the same architecture), by default its EMA parameters
(config.method.teacher_params='ema'; what that run samples and evaluates with) or its raw ones
('params'). The teacher run is read when the method is built (`run_files`: its config.json and
the newest readable checkpoint's parameters, outside any trace, without building its trainer, so
`methods` does not import `training`), so building the method of a distillation run (also for
--mode=eval, --mode=sample and frontier sweeps, where the restored checkpoint then replaces both
networks) needs teacher_workdir readable; `init` returns the loaded weights (constants of the
jitted init, fine at the sizes trained here).

Deterministic discrete trajectories (Duo eq. 22). One Gaussian noise eps ~ N(0, I_K) per token,
shared by the two times t > s of a training pair, on Duo's Gaussian level

    gamma_u = gamma_min + u (gamma_max - gamma_min),   a_u = sqrt(sigmoid(-gamma_u))          (1)
    z_u = argmax_j (a_u e_x0 + sqrt(1 - a_u^2) eps)_j,                                      (2)

so z_u has the uniform marginal q_u at alpha_u = T(a_u) (`duality`), and along u each token
changes at most once (between x0 and argmax eps). Joint law of one token, alpha_s > alpha_t:
P(z_t = z_s) = 1 - (K - 1)/K (alpha_s - alpha_t), z_t != z_s only as (z_t = j != x0, z_s = x0).
`duality.relaxed_sample(key, x0, a, K, tau=0, top_k=1)` with the same key at both levels draws (2)
exactly (order statistics: x0's coordinate, the largest of the other K - 1 and its class), without
the K-wide latent.

The loss (Duo Alg. 1, `Distillation.nll`). Per step, u ~ U[0, 1) stratified over the batch,

    t = min(u + delta, 1),   s = max(t - delta, 0),                                         (3)
    loss = (1/(B L)) sum_{b,l} KL( x_theta(z_t, t) || x_teacher(z_s, s) )_{b,l}             (4)

with stop_gradient on the teacher (it never receives a gradient). x_theta is the network's output
distribution softmax(logits) (Duo's log_x_theta, its 'mean' output; whatever the parameterization
means, as in Duo's code). The direction KL(student || teacher) is the paper's section 4.2 (as
digested) and Duo's default (`loss_type: kl-bwd`); the code's alternative kl-fwd is not
implemented. The teacher takes one network call at (z_s, s): its prediction one step of size
delta closer to the data is the target of the student's prediction at t. Both networks read the time t_net =
schedule.inverse(alpha_u) of config.process's schedule (as the 'duo' method does), so the student
samples with the plain uniform process of config.process.

Rounds. delta_n = delta_init 2^n in round n = floor(step / round_steps) (Duo: delta_0 = 1/512,
dt = 2^n / T, T = 512, 5 rounds of 10k steps); at each round boundary the teacher is refreshed
from the student's raw parameters (Duo: `teacher_ema=False`; its Table 6 finds an EMA teacher worse).
The refresh lives in the method's optimizer (`teacher_refresh`), so the trainer knows nothing of
it: the whole-tree transformation applies the config's optimizer to params['network'] and, for
params['teacher'], emits the update (student after this step - teacher) when the step that
follows is a multiple of round_steps, else 0. The trainer's EMA averages params['teacher'] too;
that average is never read (the loss reads params['teacher'], samples and evaluation read
params['network'], i.e. the EMA of the student). The boundary counter is the optimizer's own
count, which equals the trainer's step unless a non-finite step was skipped (the trainer keeps the
old optimizer state then), after which the refresh comes one step per skipped step later than the
delta doubling of (3), which reads the trainer's step.

Time window. Duo distils over gamma in [-4, -1] (distillation.yaml), which at K = 50257 spans
alpha = T(a) in [0.0062, 0.9987]; by default (gamma_min/max None) the window here is the one with
that alpha range for this K (K = 50257 gives back about [-4, -1]), since the few-step sampler runs
over the whole of [0, 1].

Deviations from Duo's code (documented choices; docs/duo.md and docs/deviations.md list them):
(i) initial weights: Duo's distil_owt.sh loads the trained run with `training.finetune_path`
(Lightning's load_from_checkpoint: the raw backbone weights), and its teacher is a deep copy of
that backbone; ours start both networks from the run's EMA weights by default (teacher_params=
'ema', the weights the teacher run samples and evaluates with, so distillation starts from the
model whose numbers were reported); teacher_params='params' is Duo's choice. (ii) teacher mode:
Duo's deep copy runs in the backbone's mode (train mode during training, so with its dropout,
0.1 in Duo's small model: a random target); ours is evaluated with train=False (a deterministic
target; identical when config.model.dropout = 0). Its t is drawn with its own low-discrepancy sampler then
clipped as in (3); ours the same rule with this library's stratified shift. Labels (class-
conditional networks) are passed to both networks without label dropout.

Evaluation and sampling are those of the 'diffusion' method on the student (params['network']):
`nelbo_samples` is the student's NELBO under config.process, `generate` any uniform sampler.

aux: 'nelbo' [B, L] is the per-token KL (4) (not a bound), 'weights' the padding mask; metrics
'delta' and 'round'.

Config fields (config.method.*, validated; defaults are the paper's):
    name              'duo_distill'
    teacher_workdir   the --workdir of a trained uniform-diffusion run (required)
    teacher_params    'ema' (default) | 'params'
    round_steps       int >= 1 (Duo: 10000)
    delta_init        float in (0, 1] (Duo: 1/512)
    gamma_min, gamma_max  both None (default window above) or floats, gamma_min < gamma_max
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from discrete_diffusion import duality, run_files
from discrete_diffusion.methods import stratified
from discrete_diffusion.methods.base import Batch, Params, token_weights
from discrete_diffusion.methods.diffusion import Diffusion
from discrete_diffusion.methods.duo import GaussianDualSchedule, gamma_from_alpha_gauss

Array = jax.Array

TEACHER_PARAMS = ("ema", "params")
TEACHER_METHODS = ("duo", "diffusion", "duo_distill")
DEFAULT_ROUND_STEPS = 10_000
DEFAULT_DELTA_INIT = 1.0 / 512
# config.method's fields: (type, default); gamma_min/max None: `default_distill_gamma_window`
DECLARED: dict[str, tuple[type, Any]] = {
    "teacher_workdir": (str, None), "teacher_params": (str, TEACHER_PARAMS[0]),
    "round_steps": (int, DEFAULT_ROUND_STEPS), "delta_init": (float, DEFAULT_DELTA_INIT),
    "gamma_min": (float, None), "gamma_max": (float, None),
}
FIELDS = ("name", *DECLARED)
# alpha = T(a(gamma)) at gamma = -1 and -4 for K = 50257: Duo's distillation window (see module doc)
DISTILL_ALPHA_WINDOW = (0.0062, 0.9987)


def default_distill_gamma_window(num_classes: int) -> tuple[float, float]:
    """(gamma_min, gamma_max) with T(a(gamma_min)) = 0.9987 and T(a(gamma_max)) = 0.0062 for K
    classes (bisection of T): the alpha range of Duo's [-4, -1] at K = 50257."""
    lo, hi = DISTILL_ALPHA_WINDOW
    a = duality.inverse_diffusion_transform(jnp.array([hi, lo]), num_classes)
    g = gamma_from_alpha_gauss(a)
    return float(g[0]), float(g[1])


def delta_at(step: Array, delta_init: float, round_steps: int) -> Array:
    """delta_n = delta_init * 2^n, n = floor(step / round_steps) (Duo `_compute_dt`)."""
    n = jnp.asarray(step, jnp.int32) // round_steps
    return delta_init * jnp.exp2(n.astype(jnp.float32))


def pair_times(u: Array, delta: Array) -> tuple[Array, Array]:
    """(t, s) = (min(u + delta, 1), max(t - delta, 0)): eq. (3); s < t whenever delta > 0."""
    t = jnp.minimum(u + delta, 1.0)
    return t, jnp.maximum(t - delta, 0.0)


def trajectory_pair(key: Array, x0: Array, a_t: Array, a_s: Array, num_classes: int
                    ) -> tuple[Array, Array]:
    """(z_t, z_s) of eq. (2) at Gaussian levels a_t, a_s from the same noise: per token
    z_u = argmax(a_u e_x0 + sqrt(1 - a_u^2) eps), eps shared. x0 int [..., L]; a_t, a_s of
    shape [], x0.shape[:-1] or x0.shape. Exact argmax via `duality.relaxed_sample(top_k=1)` (the
    noise is a function of the key only, so one key gives one trajectory)."""
    z_t = duality.relaxed_sample(key, x0, a_t, num_classes, tau=0.0, top_k=1)[0]
    z_s = duality.relaxed_sample(key, x0, a_s, num_classes, tau=0.0, top_k=1)[0]
    return z_t, z_s


def categorical_kl(logits_p: Array, logits_q: Array) -> Array:
    """KL(p || q) = sum_j p_j (log p_j - log q_j), p = softmax(logits_p), over the last axis."""
    log_p = jax.nn.log_softmax(logits_p.astype(jnp.float32), axis=-1)
    log_q = jax.nn.log_softmax(logits_q.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


# --------------------------------------------------------------------------------------------------
# The round-wise teacher refresh, as an optimizer of the whole parameter tree
# --------------------------------------------------------------------------------------------------


class TeacherRefreshState(NamedTuple):
    count: Array  # updates applied so far
    inner: optax.OptState  # the student's optimizer state (over {'network': ...})


def teacher_refresh(default: optax.GradientTransformation, round_steps: int, *,
                    student: str = "network", teacher: str = "teacher") -> optax.GradientTransformation:
    """A GradientTransformation of params {student: ..., teacher: ..., [others frozen]}:

        updates[student] = default's update of params[student] (from grads[student] only)
        updates[teacher] = (params[student] + updates[student]) - params[teacher]
                           if (count + 1) % round_steps == 0 else 0
        updates[other]   = 0

    so after the update numbered count + 1 = n round_steps (the step at which round n begins)
    params[teacher] equals the student of that step (to float rounding of t + (s - t)), and is
    constant in between; grads[teacher] is ignored. `default` sees the tree {student: ...}, so its
    moments keep the parameters' paths (and their sharding rules)."""
    if isinstance(round_steps, bool) or not isinstance(round_steps, int) or round_steps < 1:
        raise ValueError(f"round_steps={round_steps!r} must be an int >= 1")

    def init(params: Params) -> TeacherRefreshState:
        return TeacherRefreshState(jnp.zeros((), jnp.int32), default.init({student: params[student]}))

    def update(grads: Params, state: TeacherRefreshState, params: Params | None = None):
        if params is None:
            raise ValueError("teacher_refresh needs the parameters (tx.update(grads, state, params))")
        inner_updates, inner = default.update({student: grads[student]}, state.inner,
                                              {student: params[student]})
        new_student = optax.apply_updates(params[student], inner_updates[student])
        count = state.count + 1
        refresh = (count % round_steps) == 0
        updates = {k: jax.tree.map(jnp.zeros_like, v) for k, v in grads.items()}
        updates[student] = inner_updates[student]
        updates[teacher] = jax.tree.map(
            lambda s, t: jnp.where(refresh, s - t, jnp.zeros_like(t)), new_student, params[teacher])
        return updates, TeacherRefreshState(count, inner)

    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------------
# Loading the teacher
# --------------------------------------------------------------------------------------------------


def load_teacher_network(workdir: Any, which: str = "ema") -> tuple[Any, Any]:
    """(host copy of params['network'] of the latest checkpoint of `workdir`, its run's config).
    `which`: 'ema' (ema_params) or 'params'. Errors name config.method.teacher_workdir."""
    field = f"config.method.teacher_workdir={workdir!r}"
    if not isinstance(workdir, str) or not workdir:
        raise ValueError(f"{field} must be the --workdir of a trained uniform-diffusion run "
                         f"(method one of {list(TEACHER_METHODS)}), e.g. "
                         "--config.method.teacher_workdir=runs/shk_duo")
    try:
        tconfig = run_files.load_config(workdir)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"{field} is unreadable: {e}") from e
    from discrete_diffusion import methods

    tname = methods.method_name(tconfig)
    if tname not in TEACHER_METHODS or tconfig.process.get("name", None) != "uniform":
        raise ValueError(f"{field}: its run has method {tname!r} and process "
                         f"{tconfig.process.get('name', None)!r}; a teacher must be one of "
                         f"{list(TEACHER_METHODS)} on the 'uniform' process")
    try:
        tree, _ = run_files.load_params(workdir, "ema_params" if which == "ema" else "params")
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"{field} is unreadable: {e}") from e
    return tree["network"], tconfig


def _field_error(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"config.method.{field}={value!r} must be {allowed}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class DuoDistill(Diffusion):
    """Discrete consistency distillation of a uniform diffusion model (module docstring)."""

    name = "duo_distill"
    samples_with_config_sampler = True
    config_declared = {"method": DECLARED}

    @staticmethod
    def validate_config(config: Any) -> None:
        """The method's fields (errors name the field and the allowed values); the teacher
        workdir itself is read when the method is built."""
        if config.process.get("name", None) != "uniform":
            raise ValueError(f"config.process.name={config.process.get('name', None)!r} is not one of "
                             "['uniform'] for config.method.name='duo_distill'")
        if config.model.get("noise_input", False):
            raise ValueError("config.model.noise_input must be False for config.method.name='duo_distill'")
        mc = config.method
        unknown = sorted(set(mc.keys()) - set(FIELDS))
        if unknown:
            raise ValueError(f"config.method.{unknown[0]} is not a field of config.method.name="
                             f"'duo_distill' (allowed: {list(FIELDS)})")
        wd = mc.get("teacher_workdir", None)
        if wd is not None and (not isinstance(wd, str) or not wd):
            raise _field_error("teacher_workdir", wd, "the --workdir of a trained run (a path)")
        which = mc.get("teacher_params", "ema")
        if which not in TEACHER_PARAMS:
            raise ValueError(f"config.method.teacher_params={which!r} is not one of {list(TEACHER_PARAMS)}")
        rs = mc.get("round_steps", DEFAULT_ROUND_STEPS)
        if isinstance(rs, bool) or not isinstance(rs, int) or rs < 1:
            raise _field_error("round_steps", rs, "an int >= 1")
        d0 = mc.get("delta_init", DEFAULT_DELTA_INIT)
        if not _is_number(d0) or not 0 < d0 <= 1:
            raise _field_error("delta_init", d0, "a number in (0, 1]")
        g_min, g_max = mc.get("gamma_min", None), mc.get("gamma_max", None)
        if (g_min is None) != (g_max is None):
            raise ValueError(f"config.method.gamma_min={g_min!r} and config.method.gamma_max={g_max!r} "
                             "must be both None or both numbers")
        if g_min is not None:
            for field, value in (("gamma_min", g_min), ("gamma_max", g_max)):
                if not _is_number(value) or not math.isfinite(value):
                    raise _field_error(field, value, "None or a finite number")
            if not g_min < g_max:
                raise _field_error("gamma_min", g_min, f"< config.method.gamma_max={g_max!r}")

    def __init__(self, config: Any, num_classes: int, *, teacher_network: Any = None):
        """`teacher_network` (a params['network'] tree) replaces reading teacher_workdir (tests)."""
        self.validate_config(config)
        super().__init__(config, num_classes)
        K = self.num_classes = int(num_classes)
        mc = config.method
        self.round_steps = int(mc.get("round_steps", DEFAULT_ROUND_STEPS))
        self.delta_init = float(mc.get("delta_init", DEFAULT_DELTA_INIT))
        g_min, g_max = mc.get("gamma_min", None), mc.get("gamma_max", None)
        if g_min is None:
            g_min, g_max = default_distill_gamma_window(K)
        self.dual = GaussianDualSchedule(K, float(g_min), float(g_max))
        if teacher_network is None:
            teacher_network, tconfig = load_teacher_network(mc.get("teacher_workdir", None),
                                                            mc.get("teacher_params", "ema"))
            self._check_teacher_config(tconfig, mc.teacher_workdir)
        self._check_teacher_shapes(teacher_network, mc.get("teacher_workdir", None))
        self.teacher_network = jax.tree.map(np.asarray, teacher_network)

    def _check_teacher_config(self, tconfig: Any, workdir: str) -> None:
        """The teacher's time input and outputs mean what the student's do."""
        field = f"config.method.teacher_workdir={workdir!r}"
        for path in ("process.schedule", "process.schedule_eps", "process.schedule_power",
                     "model.parameterization", "model.time_conditioning"):
            sec, key = path.split(".")
            mine, theirs = self.config[sec].get(key, None), tconfig[sec].get(key, None)
            if mine != theirs:
                raise ValueError(f"{field}: its config.{path}={theirs!r} differs from this config's "
                                 f"{mine!r}; the student must read time and outputs as the teacher does")
        K = tconfig.process.get("num_classes", None)
        if K is not None and int(K) != self.num_classes:
            raise ValueError(f"{field}: its run has {K} classes, this data {self.num_classes}")

    def _check_teacher_shapes(self, teacher_network: Any, workdir: Any) -> None:
        want = jax.eval_shape(lambda k: Diffusion.init(self, k, {"tokens": jnp.zeros((1, 8), jnp.int32)}),
                              jax.random.key(0))["network"]
        shapes = lambda tree: jax.tree.map(lambda x: tuple(np.shape(x)), tree)  # noqa: E731
        if jax.tree.structure(want) != jax.tree.structure(teacher_network) or \
                shapes(want) != shapes(teacher_network):
            raise ValueError(f"config.method.teacher_workdir={workdir!r}: its network does not have "
                             "the architecture of this config.model (layers, widths, vocabulary)")

    # -- parameters and their optimizer
    def init(self, key: Array, example_batch: Batch) -> Params:
        """{'network': teacher's network, 'teacher': the same} (the key is unused)."""
        del key, example_batch
        copy = lambda: jax.tree.map(jnp.asarray, self.teacher_network)  # noqa: E731
        return {"network": copy(), "teacher": copy()}

    def optimizer(self, training_config: Any,
                  default: optax.GradientTransformation) -> optax.GradientTransformation:
        """The config's optimizer on the student, the round-wise refresh on the teacher."""
        del training_config
        return teacher_refresh(default, self.round_steps)

    # -- the objective
    def delta(self, step: Array) -> Array:
        return delta_at(step, self.delta_init, self.round_steps)

    def prepare(self, batch: Batch, key: Array) -> Batch:
        """Per row: dcd_u [B] (stratified over the batch, [0, 1)) and dcd_key [B] (its noise), drawn
        once per global batch so micro-batches see the whole batch's randomness."""
        k_u, k_noise = jax.random.split(jax.random.fold_in(key, 0xDCD))
        B = batch["tokens"].shape[0]
        return {**batch, "dcd_u": stratified.batch_times(k_u, B, 0.0),
                "dcd_key": jax.random.split(k_noise, B)}

    def pair(self, batch: Batch, delta: Array) -> dict:
        """The training pair of a prepared batch at step size delta: t, s [B] (3), their alphas
        and network times, and z_t, z_s [B, L] (2) from each row's noise."""
        t, s = pair_times(batch["dcd_u"], delta)
        K = self.num_classes
        z_t, z_s = jax.vmap(lambda k, x, at, as_: trajectory_pair(k, x, at, as_, K))(
            batch["dcd_key"], batch["tokens"], self.dual.alpha_gauss(t), self.dual.alpha_gauss(s))
        alpha_t, alpha_s = self.dual.alpha(t), self.dual.alpha(s)
        inv = lambda al: jnp.clip(self.proc.schedule.inverse(al), 0.0, 1.0)  # noqa: E731
        return {"t": t, "s": s, "delta": delta, "alpha_t": alpha_t, "alpha_s": alpha_s,
                "t_net": inv(alpha_t), "s_net": inv(alpha_s), "z_t": z_t, "z_s": z_s}

    def kl_per_token(self, params: Params, batch: Batch, key: Array, *, train: bool,
                     delta: Array) -> tuple[Array, dict]:
        """(KL (4) per token [B, L], the pair at step size delta)."""
        p = self.pair(batch, delta)
        labels = self._label_inputs(batch, False, key)
        student = self.network(params, p["z_t"], p["t_net"], train=train,
                               key=key if train else None, **labels)
        teacher_params = {"network": jax.lax.stop_gradient(params["teacher"])}
        teacher = jax.lax.stop_gradient(self.network(teacher_params, p["z_s"], p["s_net"], **labels))
        return categorical_kl(student, teacher), p

    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool = True,
             step: Array | None = None) -> tuple[Array, dict]:
        if "dcd_key" not in batch:
            batch = self.prepare(batch, key)
        step = jnp.zeros((), jnp.int32) if step is None else jnp.asarray(step)
        kl, p = self.kl_per_token(params, batch, jax.random.fold_in(key, 2), train=train,
                                  delta=self.delta(step))
        w = token_weights(batch)
        B, L = batch["tokens"].shape
        metrics = {"delta": p["delta"], "round": (step // self.round_steps).astype(jnp.float32)}
        return jnp.sum(kl * w) / (B * L), {"nelbo": kl * w, "weights": w, "metrics": metrics}

    # nelbo_samples and generate: the 'diffusion' method's, on the student (module docstring)
    nelbo_samples = Diffusion.nelbo_samples
    generate = Diffusion.generate


__all__ = ["DECLARED", "DISTILL_ALPHA_WINDOW", "FIELDS", "DuoDistill", "TeacherRefreshState",
           "categorical_kl", "default_distill_gamma_window", "delta_at", "load_teacher_network", "pair_times",
           "teacher_refresh", "trajectory_pair"]
