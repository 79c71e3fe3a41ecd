"""Forward processes (per-token interpolating kernels), their marginals and reverse posteriors.

Every process here factorizes over positions and has the per-token marginal

    q_t(x_t | x_0) = alpha_t onehot(x_0) + (1 - alpha_t) pi,            (1)

over V states, where the K clean classes are 0..K-1 and pi is the prior:
  * masked (absorbing, MDLM/MD4): V = K + 1, pi = onehot(mask), mask id = K;
  * uniform (UDLM/Duo):           V = K,     pi = 1/K.

The forward transition between times s < t is Q_{t|s}(x_t | x_s) = a onehot(x_s) + (1 - a) pi with
a = alpha_t / alpha_s, so the exact bridge (reverse posterior) is

    q(x_s | x_t, x_0) = Q_{t|s}(x_t | x_s) q_s(x_s | x_0) / q_t(x_t | x_0).          (2)

Numerator and denominator of (2) are linear in onehot(x_0). Two ways to use a distribution over x_0:
  * `bridge_mixture(x_t, t, s, mu)` = sum_v mu(v) q(x_s | x_t, v): the exact reverse kernel when mu is
    the denoiser p(x_0^i | x_t) (denoiser semantics);
  * `bridge_plugin(x_t, t, s, pi)` = (2) evaluated at the probability vector pi (linear numerator over
    linear denominator): the exact reverse kernel when pi is the leave-one-out (LOO) posterior
    p(x_0^i | x_t without position i) (LOO semantics). For the uniform process, plugging the denoiser
    in here is biased (uniform_duo_mdlm.md section 2.3); for the masked process both forms coincide.

Processes are frozen dataclasses (hashable, usable as static arguments of `jax.jit`); all methods are
pure. Shapes: x0, x_t int32 `[..., L]`; t, s float broadcastable to `x.shape[:-1]` (per sequence)
or equal to `x.shape` (per position); distributions over states carry a trailing axis `[..., L, V]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import checks, schedules

Array = jnp.ndarray

# log(0) stand-in: finite so that gradients and `0 * log 0` stay NaN-free.
NEG_INF = -1e30
# Floor for probabilities inside logs.
TINY = 1e-30


def per_token(t: Array | float, x: Array) -> Array:
    """Makes a time `t` ([], [...] per sequence or [..., L] per position) broadcastable with `x`."""
    t = jnp.asarray(t, dtype=jnp.result_type(float))
    return t if t.ndim == x.ndim else t[..., None]


@dataclasses.dataclass(frozen=True)
class InterpolatingProcess:
    """Base class: equation (1) with a prior `log_prior()` over V states."""

    num_classes: int
    schedule: Any = dataclasses.field(default_factory=schedules.Linear)

    name = "interpolating"

    # ---- the process ------------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        """V: number of values x_t can take."""
        raise NotImplementedError

    @property
    def mask_id(self) -> int | None:
        """The absorbing state's id, or None."""
        return None

    def log_prior(self) -> Array:
        """log pi, `[V]` (NEG_INF for impossible states)."""
        raise NotImplementedError

    def alpha(self, t: Array) -> Array:
        """alpha_t: probability that a token is still clean at time t.

        Every function of a time (marginals, bridges, the parameterization conversions) goes
        through here: a concrete ``t`` outside [0, 1] raises ValueError; traced ones (inside jit)
        are not checked, so jitted code has no host callback.
        """
        checks.check_times(t, what=f"t (time of the {self.name} process)")
        return self.schedule.alpha(t)

    def dalpha(self, t: Array) -> Array:
        """d alpha_t / dt (``t`` checked like ``alpha``)."""
        checks.check_times(t, what=f"t (time of the {self.name} process)")
        return self.schedule.dalpha(t)

    def is_noisy(self, x_t: Array) -> Array:
        """Boolean `[..., L]`: positions whose x_t does not reveal x_0 (all, for uniform)."""
        return jnp.ones(x_t.shape, dtype=bool)

    # ---- marginals ----------------------------------------------------------------------------
    def marginal_from_probs(self, x0_probs: Array, alpha: Array) -> Array:
        """alpha * x0_probs + (1 - alpha) pi over V states. x0_probs `[..., K]`, alpha `[...]`."""
        a = alpha[..., None]
        pad = self.num_states - self.num_classes
        x0_v = jnp.pad(x0_probs, [(0, 0)] * (x0_probs.ndim - 1) + [(0, pad)])
        return a * x0_v + (1.0 - a) * jnp.exp(self.log_prior())

    def marginal_probs(self, x0: Array, t: Array) -> Array:
        """q_t(x_t^i | x_0^i) as `[..., L, V]`, equation (1)."""
        onehot = jax.nn.one_hot(x0, self.num_classes)
        return self.marginal_from_probs(onehot, self.alpha(per_token(t, x0)))

    def sample_prior(self, key: Array, shape: tuple[int, ...]) -> Array:
        """x_1 ~ pi, int32 of `shape`."""
        raise NotImplementedError

    def sample_marginal(self, key: Array, x0: Array, t: Array) -> Array:
        """x_t ~ q_t(. | x_0): keep each token w.p. alpha_t, else replace it by a draw from pi."""
        k_keep, k_noise = jax.random.split(key)
        keep = jax.random.uniform(k_keep, x0.shape) < self.alpha(per_token(t, x0))
        return jnp.where(keep, x0, self.sample_prior(k_noise, x0.shape)).astype(jnp.int32)

    def corrupt(self, key: Array, x0: Array, t: Array) -> tuple[Array, dict[str, Array]]:
        """(x_t, extras): x_t ~ q_t(. | x_0) and the further inputs the network reads beside
        (x_t, t), passed to it (and to the objective) as keyword arguments; none here."""
        return self.sample_marginal(key, x0, t), {}

    def log_likelihood(self, x_t: Array, t: Array) -> Array:
        """log q_t(x_t^i | x_0^i = v) for the K clean values v, `[..., L, K]` (NEG_INF if 0)."""
        alpha = self.alpha(per_token(t, x_t))[..., None]
        onehot = jax.nn.one_hot(x_t, self.num_classes)  # zero row for the mask id
        prior_xt = jnp.exp(jnp.take(self.log_prior(), x_t))[..., None]
        lik = alpha * onehot + (1.0 - alpha) * prior_xt
        return jnp.where(lik > 0, jnp.log(jnp.maximum(lik, TINY)), NEG_INF)

    # ---- reverse posteriors ---------------------------------------------------------------------
    def bridge_plugin(self, x_t: Array, t: Array, s: Array, x0_probs: Array) -> Array:
        """Plug-in bridge: equation (2) at a probability vector x0_probs `[..., L, K]` -> `[..., L, V]`.

            p(x_s) = Q_{t|s}(x_t | x_s) (alpha_s x0_probs + (1 - alpha_s) pi)(x_s) / normalizer,
            Q_{t|s}(x_t | x_s) = (alpha_t / alpha_s) 1[x_s = x_t] + (1 - alpha_t / alpha_s) pi(x_t).

        Exact reverse kernel p(x_s^i | x_t) when x0_probs is the LOO posterior.
        """
        alpha_t = self.alpha(per_token(t, x_t))
        alpha_s = self.alpha(per_token(s, x_t))
        a_ts = (alpha_t / jnp.maximum(alpha_s, TINY))[..., None]
        prior_xt = jnp.exp(jnp.take(self.log_prior(), x_t))[..., None]
        transition = a_ts * jax.nn.one_hot(x_t, self.num_states) + (1.0 - a_ts) * prior_xt
        numerator = transition * self.marginal_from_probs(x0_probs, alpha_s)
        probs = numerator / jnp.maximum(numerator.sum(-1, keepdims=True), TINY)
        return self._carry_over(x_t, probs)

    def bridge_mixture(self, x_t: Array, t: Array, s: Array, x0_probs: Array) -> Array:
        """Mixture of bridges sum_v x0_probs(v) q(x_s | x_t, x_0 = v), `[..., L, K]` -> `[..., L, V]`.

        Exact reverse kernel when x0_probs is the denoiser p(x_0^i | x_t). Since (2) is linear over
        linear, this equals the plug-in bridge at the weights x0_probs(v) / q_t(x_t | v), i.e. at the
        LOO posterior obtained from x0_probs by Bayes' rule.
        """
        log_w = jnp.log(jnp.maximum(x0_probs, TINY)) - self.log_likelihood(x_t, t)
        log_w = jnp.where(x0_probs > 0, log_w, NEG_INF)
        noisy = self.is_noisy(x_t)[..., None]
        weights = jax.nn.softmax(jnp.where(noisy, log_w, 0.0), axis=-1)
        return self.bridge_plugin(x_t, t, s, weights)

    def _carry_over(self, x_t: Array, probs: Array) -> Array:
        """Positions that reveal x_0 (unmasked tokens of the masked process) stay as they are."""
        noisy = self.is_noisy(x_t)[..., None]
        return jnp.where(noisy, probs, jax.nn.one_hot(x_t, self.num_states))


@dataclasses.dataclass(frozen=True)
class MaskedProcess(InterpolatingProcess):
    """Masked (absorbing) diffusion: x_t in {0..K-1} U {mask = K}, pi = onehot(mask)."""

    name = "masked"

    @property
    def num_states(self) -> int:
        return self.num_classes + 1

    @property
    def mask_id(self) -> int:
        return self.num_classes

    def log_prior(self) -> Array:
        return jnp.full((self.num_states,), NEG_INF).at[self.mask_id].set(0.0)

    def is_noisy(self, x_t: Array) -> Array:
        return x_t == self.mask_id

    def sample_prior(self, key: Array, shape: tuple[int, ...]) -> Array:
        del key
        return jnp.full(shape, self.mask_id, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class UniformProcess(InterpolatingProcess):
    """Uniform diffusion: x_t in {0..K-1}, pi = 1/K."""

    name = "uniform"

    @property
    def num_states(self) -> int:
        return self.num_classes

    def log_prior(self) -> Array:
        return jnp.full((self.num_states,), -jnp.log(float(self.num_classes)))

    def sample_prior(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jax.random.randint(key, shape, 0, self.num_classes, dtype=jnp.int32)


@dataclasses.dataclass(frozen=True)
class UniformAbsorbingProcess(UniformProcess):
    """The absorbing-state reformulation of uniform diffusion (rev_udm's AUDM; uniform_duo_mdlm.md 2.7).

    Each token draws a private noise id u ~ Uniform(K) once and is absorbed by time t with
    probability 1 - alpha_t: x_t = x_0 if not absorbed, else u. Then

        P(x_t = v | x_0) = alpha_t 1[v = x_0] + (1 - alpha_t) / K,

    the uniform process's marginal (jointly over positions too), but given u it is an absorbing
    process whose mask state at position i is u^i: positions with x_t != u are certainly clean
    (carry-over), positions with x_t = u are "masked" (absorbed, or clean with x_0 = u). The
    network sees u: `model_fn(x_t, t, noise=u)` and returns the denoiser p(x_0 | x_t, u).
    """

    name = "uniform_absorbing"

    def sample_with_noise(self, key: Array, x0: Array, t: Array) -> tuple[Array, Array]:
        """(x_t, u): u ~ Uniform(K), x_t = x_0 w.p. alpha_t else u."""
        k_keep, k_noise = jax.random.split(key)
        u = self.sample_prior(k_noise, x0.shape)
        keep = jax.random.uniform(k_keep, x0.shape) < self.alpha(per_token(t, x0))
        return jnp.where(keep, x0, u).astype(jnp.int32), u

    def corrupt(self, key: Array, x0: Array, t: Array) -> tuple[Array, dict[str, Array]]:
        """(x_t, {'noise': u}): the network and the AUDM NELBO read the noise ids u."""
        x_t, u = self.sample_with_noise(key, x0, t)
        return x_t, {"noise": u}

    def resample_noise(self, key: Array, x0: Array, x_s: Array, s: Array) -> Array:
        """u_s ~ p(u | x_0, x_s) at time s:
        x_s != x_0: u = x_s;  x_s = x_0: u = x_s w.p. 1/(1 + (K - 1) alpha_s), else uniform over
        the other K - 1 ids."""
        k = self.num_classes
        k_keep, k_other = jax.random.split(key)
        alpha_s = self.alpha(per_token(s, x_s))
        keep = jax.random.uniform(k_keep, x_s.shape) < 1.0 / (1.0 + (k - 1) * alpha_s)
        other = (x_s + jax.random.randint(k_other, x_s.shape, 1, k)) % k  # uniform over ids != x_s
        return jnp.where((x_s != x0) | keep, x_s, other).astype(jnp.int32)


def masked(num_classes: int, schedule: Any = None) -> MaskedProcess:
    """Masked diffusion over K clean classes; the mask id is K."""
    return MaskedProcess(num_classes, schedule or schedules.Linear())


def uniform(num_classes: int, schedule: Any = None) -> UniformProcess:
    """Uniform diffusion over K classes."""
    return UniformProcess(num_classes, schedule or schedules.Linear())


def uniform_absorbing(num_classes: int, schedule: Any = None) -> UniformAbsorbingProcess:
    """Absorbing-state reformulation of uniform diffusion over K classes."""
    return UniformAbsorbingProcess(num_classes, schedule or schedules.Linear())


NAMES = ("masked", "uniform", "uniform_absorbing")


def from_config(process_config: Any) -> InterpolatingProcess:
    """Builds the process of `config.process` (fields name, schedule, num_classes, ...)."""
    name = process_config.name
    k = process_config.get("num_classes", None)
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"config.process.num_classes={k!r} must be an int >= 2")
    sched = schedules.get(
        process_config.get("schedule", "linear"),
        eps=process_config.get("schedule_eps", 1e-3),
        power=process_config.get("schedule_power", 2.0),
    )
    if name == "masked":
        return masked(k, sched)
    if name == "uniform":
        return uniform(k, sched)
    if name == "uniform_absorbing":
        return uniform_absorbing(k, sched)
    raise ValueError(f"config.process.name={name!r} is not one of {list(NAMES)}")
