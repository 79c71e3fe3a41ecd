"""Non-finite network outputs during sampling: flagged inside the jitted sampler, raised once.

    fn = finite_guard.checked(run)        # run(key, ...) -> out; fn(key, ...) -> (err, out)
    out = finite_guard.raise_if_bad(err, out)   # NonFiniteSamplingError naming t and the row

A sampler turns a row of NaN logits (or one where every class is -inf) into token 0 without any
error: a broken network, or `temperature=nan`, silently returns all-zero samples. `guard(model_fn)`
checks every output of the network it wraps (per row: no NaN, no +inf, not every class -inf) with
`jax.experimental.checkify.check`; `checked` threads the first failure through the sampler's loops
as part of the jitted computation's outputs (no host callback, no host sync inside the loop), and
`raise_if_bad` reads it once at the end, when the samples are fetched anyway.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import checkify

MESSAGE = ("sampling: the network output is NaN, +inf or -inf for every class at t={t} "
           "(sample row {row} of this batch)")


class NonFiniteSamplingError(FloatingPointError):
    """The network returned non-finite logits during sampling (the samples would be garbage)."""


def bad_rows(out: jax.Array) -> jax.Array:
    """bool [N]: rows of `out` ([N, ..., K] logits) holding a NaN or +inf, or a position whose
    K entries are all -inf. One reduction: the max over the K classes is NaN if one is NaN
    (jnp.max propagates NaN), +inf if one is +inf, and -inf exactly when all are -inf."""
    out = jnp.asarray(out)
    if out.ndim == 0:
        return ~jnp.isfinite(out)[None]
    top = jnp.max(out, axis=-1)
    return jnp.any(~jnp.isfinite(top).reshape(out.shape[0], -1), axis=1)


def guard(model_fn: Callable[..., Any]) -> Callable[..., Any]:
    """`model_fn` whose every floating output is checked (`bad_rows`) with checkify."""

    @functools.wraps(model_fn)
    def guarded(x_t: jax.Array, t: jax.Array, *args: Any, **kwargs: Any) -> Any:
        out = model_fn(x_t, t, *args, **kwargs)
        for leaf in jax.tree.leaves(out):
            if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) and jnp.ndim(leaf) >= 2:
                bad = bad_rows(leaf)
                row = jnp.argmax(bad)
                checkify.check(~jnp.any(bad), MESSAGE, t=_time_of_row(t, bad.shape[0])[row],
                               row=row)
        return out

    return guarded


def _time_of_row(t: Any, n: int) -> jax.Array:
    """float32 [n]: the time of each row (t a scalar, [n], or [n, ...] per position: its first)."""
    flat = jnp.asarray(t, jnp.float32).reshape(-1)
    if flat.size >= n and flat.size % n == 0:
        return flat.reshape(n, -1)[:, 0]
    return jnp.broadcast_to(flat[0], (n,))


def check_request(num_samples: Any, temperature: Any) -> None:
    """ValueError, before anything is compiled, for a negative `num_samples` or a temperature
    that is not a finite number (NaN would turn every row of logits into NaN)."""
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or int(num_samples) < 0:
        raise ValueError(f"num_samples={num_samples!r} must be an integer >= 0")
    try:
        finite = math.isfinite(float(temperature))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise ValueError(f"config.sampler.temperature={temperature!r} must be a finite number > 0")


def checked(fn: Callable[..., Any]) -> Callable[..., tuple[Any, Any]]:
    """`fn` returning (checkify error, output): the user checks of `guard` inside it."""
    return checkify.checkify(fn, errors=checkify.user_checks)


def raise_if_bad(err: Any, out: Any) -> Any:
    """`out`, or NonFiniteSamplingError with the first failed check's message (one host read)."""
    msg = err.get()
    if msg:
        first = msg.splitlines()[0].split(" (`check` failed)")[0].split(" (check failed at")[0]
        raise NonFiniteSamplingError(
            f"{first}; the samples would be meaningless (a sampler draws token 0 from such a row). "
            "Check the network's parameters (NaN weights?) and config.sampler.temperature.")
    return out


__all__ = ["MESSAGE", "NonFiniteSamplingError", "bad_rows", "check_request", "checked", "guard",
           "raise_if_bad"]
