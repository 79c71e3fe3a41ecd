"""The exponential moving average of the parameters, kept finite by construction.

    ema = ema_update(decay, ema, params)

Leaf by leaf, with M the largest finite value of the leaf's dtype,

    e' = clip(d e + (1 - d) p, -M, M)          (e' = p when d = 0).

The clip changes no value whose average is finite: it only replaces the +-inf that
d e + (1 - d) p overflows to when |e| or |p| is of the order of M (within rounding of M; from M / 2
for d = 1/2, which XLA evaluates as (e + p) / 2). Both terms are finite, so the sum cannot be NaN.
So from a finite EMA and finite new parameters the new EMA is finite, and the train step's
non-finite guard (`guarded_update`, `fused_adamw`) need not read the EMA to decide whether a step
is kept: one pass over the parameters less. Without the clip such a step would be skipped (and
every later one with it); with it the average saturates at M. A non-finite loss, gradient, moment
or parameter still skips the step, bit for bit. Where the average is finite the values are those
of d e + (1 - d) p (to the last bit, up to a multiply-add XLA may contract differently).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ema_leaf(decay: float, e: jax.Array, p: jax.Array) -> jax.Array:
    """clip(d e + (1 - d) p, -M, M) for one floating-point leaf (M: its dtype's largest value)."""
    mean = decay * e + (1.0 - decay) * p
    if not jnp.issubdtype(mean.dtype, jnp.floating):
        return mean
    largest = jnp.finfo(mean.dtype).max
    return jnp.clip(mean, -largest, largest)


def ema_update(decay: float, ema: Any, params: Any) -> Any:
    """e' = clip(d e + (1 - d) p, -M, M), leaf by leaf (the parameters themselves when d <= 0)."""
    if decay <= 0:
        return params
    return jax.tree.map(lambda e, p: ema_leaf(decay, e, p), ema, params)
