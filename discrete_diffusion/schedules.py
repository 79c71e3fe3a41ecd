"""Noise schedules alpha(t): the probability that a token is still clean at time t in [0, 1].

Every interpolating process in this library has the per-token marginal

    q_t(x_t | x_0) = alpha(t) * onehot(x_0) + (1 - alpha(t)) * prior,

with alpha decreasing from alpha(0) ~ 1 to alpha(1) ~ 0. A schedule is a frozen (hashable)
dataclass with three pure methods, all elementwise so that t may be a scalar, per sequence
`[B]` or per position `[B, L]` (multivariate schedules):

    alpha(t)        alpha_t
    dalpha(t)       d alpha_t / dt   (<= 0)
    inverse(a)      the t with alpha(t) = a (used by the first-hitting sampler)
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

Array = jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Linear:
    """alpha(t) = 1 - (1 - eps) t.

    With eps = 0 this is MD4's "linear"; with eps = 1e-3 it is MDLM/Duo's "log-linear" schedule
    (sigma(t) = -log(1 - (1 - eps) t) is linear in log space), where alpha(1) = eps > 0.
    """

    eps: float = 0.0
    name: str = "linear"

    def alpha(self, t: Array) -> Array:
        return 1.0 - (1.0 - self.eps) * jnp.asarray(t)

    def dalpha(self, t: Array) -> Array:
        return jnp.full_like(jnp.asarray(t, dtype=jnp.result_type(float)), -(1.0 - self.eps))

    def inverse(self, a: Array) -> Array:
        return (1.0 - jnp.asarray(a)) / (1.0 - self.eps)


@dataclasses.dataclass(frozen=True)
class Cosine:
    """alpha(t) = 1 - cos(pi/2 (1 - t))  (MD4 "cosine", Duo's CIFAR-10 schedule).

    alpha'(t) = -pi/2 sin(pi/2 (1 - t)).
    """

    name: str = "cosine"

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.cos(0.5 * math.pi * (1.0 - jnp.asarray(t)))

    def dalpha(self, t: Array) -> Array:
        return -0.5 * math.pi * jnp.sin(0.5 * math.pi * (1.0 - jnp.asarray(t)))

    def inverse(self, a: Array) -> Array:
        return 1.0 - jnp.arccos(jnp.clip(1.0 - jnp.asarray(a), -1.0, 1.0)) / (0.5 * math.pi)


@dataclasses.dataclass(frozen=True)
class Polynomial:
    """alpha(t) = 1 - t^p  (MD4 "poly<p>"); p = 1 is the linear schedule.

    alpha'(t) = -p t^(p-1).
    """

    power: float = 2.0
    name: str = "poly"

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.asarray(t) ** self.power

    def dalpha(self, t: Array) -> Array:
        return -self.power * jnp.asarray(t) ** (self.power - 1.0)

    def inverse(self, a: Array) -> Array:
        return jnp.clip(1.0 - jnp.asarray(a), 0.0, 1.0) ** (1.0 / self.power)


Schedule = Linear | Cosine | Polynomial


@dataclasses.dataclass(frozen=True, eq=False)
class PerTokenPolynomial:
    """alpha_{t,l} = 1 - t^{w_l}: a power per token (multivariate schedules, learned orders).

    `power` is an array w that broadcasts against t: shape [L] for a schedule per position
    (Garg, Kohli & Sarawagi 2025), or w[x_0] `[B, L]` for a schedule per clean value (GenMD4's
    vector of powers indexed by the token). Elementwise in (t, w):

        alpha     = 1 - t^w,
        alpha'    = -w t^(w - 1),
        rate      = -alpha' / (1 - alpha) = w / t        (the masked NELBO weight per token),
        inverse   = (1 - a)^(1 / w),

    so a masked process built on it (`processes.masked(K, PerTokenPolynomial(w))`) corrupts
    with a per-token alpha and `losses.masked_nelbo` applies the per-token weight. The power may
    be a traced array (a learned parameter): the dataclass compares and hashes by identity, so it
    is not a static jit argument. GenMD4 uses 1 - (1 - eps) t^w (alpha(1) = eps); this is eps = 0.
    """

    power: Array
    name: str = "per_token_poly"

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.asarray(t) ** self.power

    def dalpha(self, t: Array) -> Array:
        return -self.power * jnp.asarray(t) ** (self.power - 1.0)

    def rate(self, t: Array) -> Array:
        """-alpha'/(1 - alpha) = w / t."""
        return self.power / jnp.asarray(t)

    def inverse(self, a: Array) -> Array:
        return jnp.clip(1.0 - jnp.asarray(a), 0.0, 1.0) ** (1.0 / self.power)

NAMES = ("linear", "loglinear", "cosine", "poly")


def get(name: str, *, eps: float = 1e-3, power: float = 2.0) -> Schedule:
    """Returns the schedule called `name`.

    Args:
      name: 'linear' (alpha = 1 - t), 'loglinear' (alpha = 1 - (1 - eps) t), 'cosine', 'poly'.
      eps: the floor alpha(1) of 'loglinear'.
      power: the exponent p of 'poly'.
    """
    if name == "linear":
        return Linear()
    if name == "loglinear":
        return Linear(eps=eps, name="loglinear")
    if name == "cosine":
        return Cosine()
    if name == "poly":
        return Polynomial(power=power)
    raise ValueError(f"config.process.schedule={name!r} is not one of {list(NAMES)}")
