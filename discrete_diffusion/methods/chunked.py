"""Per-position work in rematerialised chunks of positions (`config.model.logits_chunk`).

    out = position_chunks(fn, c, shared, *per_position)     # out[b, l] = fn(shared, ...)[b, l]

`fn(shared, *slices)` maps slices `[B, c, ...]` of every `per_position` array (position axis 1)
to a pytree of `[B, c]` arrays (per-token losses). It runs chunk by chunk (`lax.map`) under
`jax.checkpoint`, so what it makes inside a chunk (the `[B, c, K]` logits of an output
projection, their log-softmax) exists for one chunk at a time in the forward pass and is
recomputed, again one chunk at a time, in the backward pass: no `[B, L, K]` array of logits or of
their gradient is ever whole. `shared` (the projection's parameters, per-sequence times) is
passed whole to every chunk. L need not be a multiple of c: the last L mod c positions form one
smaller chunk. Used by the diffusion, autoregressive, Duo, learned-order and VADD methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def logits_chunk(config: Any) -> int:
    """`config.model.logits_chunk` (0 or absent: whole logits), validated."""
    c = config.model.get("logits_chunk", 0) or 0
    if isinstance(c, bool) or not isinstance(c, int) or c < 0:
        raise ValueError(f"config.model.logits_chunk={c!r} must be an int >= 0 "
                         "(0: whole logits; c > 0: chunks of c positions)")
    return c


def head_params(params: Any) -> Any:
    """The part of a method's parameters `{'network': ...}` that the network's `project_hidden`
    reads (`{'final': {'out': ...}}`): what a chunk of the output projection needs, passed whole
    to every chunk instead of the whole network."""
    return {"final": {"out": params["network"]["final"]["out"]}}


def position_chunks(fn: Callable[..., Any], chunk: int, shared: Any, *per_position: Any) -> Any:
    """fn(shared, *per_position) computed over chunks of `chunk` positions, each rematerialised;
    the `[B, c]` outputs are joined back to `[B, L]` (module docstring)."""
    f = jax.checkpoint(fn)
    B, L = jax.tree.leaves(per_position)[0].shape[:2]
    c = min(chunk, L)
    n, rest = divmod(L, c)
    head = n * c
    if n == 1 and rest == 0:
        return f(shared, *per_position)

    def split(a: Array) -> Array:  # [B, n c, ...] -> [n, B, c, ...]
        return jnp.swapaxes(a[:, :head].reshape((B, n, c) + a.shape[2:]), 0, 1)

    def merge(a: Array) -> Array:  # [n, B, c] -> [B, n c]
        return jnp.swapaxes(a, 0, 1).reshape(B, head)

    out = jax.lax.map(lambda xs: f(shared, *xs), jax.tree.map(split, per_position))
    out = jax.tree.map(merge, out)
    if rest:
        tail = f(shared, *jax.tree.map(lambda a: a[:, head:], per_position))
        out = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), out, tail)
    return out
