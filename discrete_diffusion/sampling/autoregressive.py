"""Ancestral sampling of the autoregressive baseline, left to right.

    x^i ~ p_theta(x^i | x^{<i}),   i = 1, ..., L,

with the network's output transformed by temperature / top-k / nucleus (`transform_logits`) and
drawn by the exact 64-bit categorical. The network is called on the whole teacher-forcing input
(BOS, x^1, ..., x^{L-1}) (as `models.ar_inputs`) at every step (no key-value cache: L calls of
cost O(L^2) each; fine for the baseline at the sequence lengths of this library's CPU configs,
not for production decoding).
Causal attention makes the logits at position i depend only on x^{<i}, so the unfilled positions
(zeros) never influence the draw.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from discrete_diffusion.sampling.categorical import categorical, transform_logits

Array = jax.Array


def generate_autoregressive(
    key: Array,
    logits_fn: Callable[[Array], Array],
    num_samples: int,
    seq_len: int,
    bos_id: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    method: str = "exact",
) -> Array:
    """int32 `[num_samples, seq_len]` samples; `logits_fn(inputs [N, L]) -> [N, L, K]` where
    `logits[:, i]` scores x^i given `inputs[:, :i + 1]` = (BOS, x^1, ..., x^{i-1})."""

    def step(i: Array, x: Array) -> Array:
        inputs = jnp.concatenate([jnp.full((num_samples, 1), bos_id, jnp.int32), x[:, :-1]], axis=1)
        logits = logits_fn(inputs)  # [N, L, K]
        logits_i = jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)  # [N, K]
        logits_i = transform_logits(logits_i, temperature, top_k, top_p)
        token = categorical(jax.random.fold_in(key, i), logits_i, method=method).astype(jnp.int32)  # [N]
        return jax.lax.dynamic_update_index_in_dim(x, token, i, axis=1)

    x = jnp.zeros((num_samples, seq_len), jnp.int32)
    return jax.lax.fori_loop(0, seq_len, step, x)


__all__ = ["generate_autoregressive"]
