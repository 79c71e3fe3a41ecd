"""The product y = h W whose kernel gradient is formed from h^T rather than from a transposed copy
of the output's cotangent: the output layer's (below), and also the attention's qkv and out
projections (`qkv_projection`, `layers.Attention`) and the MLP's fc1 (`layers.Mlp`), where the
cotangent is as wide as or wider than h (`benchmarks/attention_projections.py`).

    y = output_matmul(h, W):   y[..., k] = sum_d h[..., d] W[d, k]     (float32 accumulation;
                                                                       k may be several axes)
    backward (G = dy as [T, K], H = h as [T, D], T the leading dims' size):
        dh = G W^T,    dW = (H^T) G    with H^T [D, T] written once, behind an optimization barrier

Autodiff gives the same two products. But for dW, XLA:CPU chose dW^T = G^T H: it wrote G^T, a
transposed copy of the [T, K] cotangent, and fused G's own producer (the cross-entropy's backward
pass, `log_prob.log_softmax_at`) into that copy, so the exponentials ran in transposed order
(0.9 s busy per 12-layer step at T = 2048, K = 50257). Transposing H instead moves [T, D]
(D = 768, 65x fewer elements). The barrier keeps XLA from folding the transpose back into the
product's dimension numbers.

Same operations as autodiff's rule for `lax.dot_general` (operand dtypes as given, float32
accumulation, each gradient cast to its primal's dtype); only the summation order of dW may
differ. Measured (`benchmarks/log_prob.py`, 2-core Xeon, load average 1.9, median of 9
alternating runs): the output layer with its cross-entropy (`log_softmax_at`), forward and
backward, 3667 ms with this product against 4553 ms with lax.dot_general (0.81x), 4.20 against
5.01 GB accessed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _dot(a: Array, b: Array, a_axes: tuple[int, ...], b_axes: tuple[int, ...]) -> Array:
    """a . b contracting a's `a_axes` with b's `b_axes`, accumulated in float32."""
    return jax.lax.dot_general(a, b, ((a_axes, b_axes), ((), ())),
                               preferred_element_type=jnp.float32)


@jax.custom_vjp
def output_matmul(h: Array, w: Array) -> Array:
    """h `[..., D]` times W `[D, *K]` -> float32 `[..., *K]` (module doc for the backward pass;
    K may be several axes, e.g. the attention's [D, 3, H, Dh], so that a sharding of one of them
    carries over to the output and the gradient without a reshape merging it with the others)."""
    return _dot(h, w, (h.ndim - 1,), (0,))


def _fwd(h: Array, w: Array) -> tuple[Array, tuple[Array, Array]]:
    return output_matmul(h, w), (h, w)


def _bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    h, w = res
    k = w.ndim - 1  # output axes K
    dh = _dot(g, w, tuple(range(g.ndim - k, g.ndim)), tuple(range(1, w.ndim)))  # [..., D]
    h_t = jax.lax.optimization_barrier(jnp.transpose(h.reshape(-1, h.shape[-1])))  # [D, T]
    g_rows = g.reshape(-1, *w.shape[1:])  # [T, *K]
    dw = _dot(h_t, g_rows, (1,), (0,))  # [D, *K]
    return dh.astype(h.dtype), dw.astype(w.dtype)


output_matmul.defvjp(_fwd, _bwd)
