"""Token embedding whose gradient is formed in the smaller of two tables.

    h = Embed(V, D, name="token_embed")(ids)          # flax.linen.Embed, same parameters
    h = embedding_lookup(E, ids)                       # E [V, D], ids int [...] -> [..., D]

The lookup is h_t = E[x_t] (`jnp.take`), and its gradient is G[v] = sum_{t: x_t = v} dh_t.
Autodiff forms G by a scatter-add of the T rows dh_t into a zeroed [V, D] table: XLA writes the
zeros, then reads and writes the table again, 3 passes over a V x D array (the 12-layer model's
[50258, 768] table: 0.46 GB of the step's bytes, whatever the batch). When the step has fewer
tokens than the vocabulary (T + 1 < V) the same sums fit in a [T + 1, D] table:

    first[v] = min{t : x_t = v}  (T where v does not occur)          [V] int, a scatter-min
    S[first[x_t]] += dh_t                                              [T + 1, D], row T stays 0
    G = S[first]                                                       [V, D], a gather

so the V x D array is written once, by the gather (`embedding_grad`). Each row of G sums the same
rows dh_t in the same order as the scatter-add into the full table does, so the two agree to the
last bit in practice (XLA:CPU), and in any case up to float32 summation order
(`tests/test_models_embedding.py` compares them, with repeated ids, on every path). Under data
parallelism the [T + 1, D] table is summed across devices where the [V, D] one was, and with
T_global + 1 < V it is the smaller of the two there too; with T + 1 >= V the gradient is autodiff's.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _normalized(ids: Array, vocab: int) -> tuple[Array, Array]:
    """(ids with negative values wrapped once, as `jnp.take` does; which of them are in range)."""
    ids = jnp.where(ids < 0, ids + vocab, ids)
    return ids, (ids >= 0) & (ids < vocab)


def embedding_grad(g: Array, ids: Array, vocab: int) -> Array:
    """G [V, D] with G[v] = sum of the rows g[t] ([..., D]) whose id is v ([...] int); ids out of
    range (after wrapping negatives once) contribute nothing, as in autodiff of `jnp.take`.
    Formed in a [T + 1, D] table when T + 1 < V (module doc), else by a scatter-add into [V, D]."""
    D = g.shape[-1]
    ids = ids.reshape(-1)
    g = g.reshape(-1, D)
    T = ids.shape[0]
    if vocab <= T + 1:
        return jnp.zeros((vocab, D), g.dtype).at[ids].add(g)
    ids, valid = _normalized(ids, vocab)
    t = jnp.arange(T, dtype=jnp.int32)
    first = jnp.full((vocab,), T, jnp.int32).at[jnp.where(valid, ids, vocab)].min(t, mode="drop")
    rep = jnp.where(valid, first[jnp.clip(ids, 0, vocab - 1)], T + 1)  # T + 1: dropped below
    sums = jnp.zeros((T + 1, D), g.dtype).at[rep].add(g, mode="drop")  # [T + 1, D]
    return sums[first]  # [V, D]


@jax.custom_vjp
def embedding_lookup(table: Array, ids: Array) -> Array:
    """h = table[ids] (`jnp.take(table, ids, axis=0)`), [..., D]; gradient `embedding_grad`."""
    return jnp.take(table, ids, axis=0)


def _lookup_fwd(table, ids):
    # The table (a parameter, alive anyway) is kept only for its static shape.
    return jnp.take(table, ids, axis=0), (table, ids)


def _lookup_bwd(residuals, g):
    table, ids = residuals
    grad = embedding_grad(g, ids, table.shape[0]).astype(table.dtype)
    return grad, np.zeros(ids.shape, jax.dtypes.float0)


embedding_lookup.defvjp(_lookup_fwd, _lookup_bwd)


class Embed(nn.Embed):
    """`flax.linen.Embed` (same fields, parameters and values) whose lookup is
    `embedding_lookup`."""

    def __call__(self, inputs: Array) -> Array:
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError("Input type must be an integer or unsigned integer.")
        (embedding,) = self.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
        if self.num_embeddings == 1:
            return jnp.broadcast_to(embedding, inputs.shape + (self.features,))
        return embedding_lookup(embedding, inputs)
