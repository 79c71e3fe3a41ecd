"""The output layer's bias add, whose gradient is a matrix-vector product.

    y = add_bias(h W, b):   y[..., k] = (h W)[..., k] + b[k]
    backward:               dy = g,   db = 1^T G   (G = g as [T, K], T the leading dims' size)

The gradient of a bias is the sum of the output cotangent over all leading positions, a column sum
of a [T, K] array. XLA:CPU reduces over the leading axis well for narrow rows but not for wide
ones (`benchmarks/column_sum.py`, 2-core Xeon, T = 2048 rows): 14 GB/s at K = 8192, 1.1 GB/s at
K = 32768 and 0.3-0.6 GB/s at K = 50257 (0.64-1.18 s for the 412 MB of a GPT-2-vocabulary
output layer's cotangent at batch 2 x 1024), against 21-24 GB/s for the same sum as the product
1^T G (18-20 ms there; 35-58x faster at K = 50257). The output layer of a large-vocabulary
model is the one bias this matters for (every other width in the network is at most
4 d_model), so only it uses this.

Same values up to the order of float32 summation (a dot accumulates in its own order); the
product is asked for at `Precision.HIGHEST` so that TPUs, whose default float32 matmul precision
is lower, keep float32 accuracy. The forward pass is y + b, unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


@jax.custom_vjp
def add_bias(y: Array, b: Array) -> Array:
    """y + b, b `[K]` broadcast over the leading axes of y `[..., K]`; db = 1^T G (module doc)."""
    return y + b


def _add_bias_fwd(y: Array, b: Array) -> tuple[Array, Array]:
    return y + b, b


def _add_bias_bwd(b: Array, g: Array) -> tuple[Array, Array]:
    rows = g.reshape(-1, g.shape[-1])  # [T, K]
    ones = jnp.ones((rows.shape[0],), rows.dtype)
    db = jnp.matmul(ones, rows, precision=jax.lax.Precision.HIGHEST)  # [K]
    return g, db.astype(b.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)
