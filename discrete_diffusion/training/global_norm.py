"""The global gradient norm, summed in two stages so that XLA:CPU does not pick a slow reduction.

    n = global_norm(grads)        # = optax.tree.norm(grads) up to float32 summation order

    ||g|| = sqrt( sum_leaves sum_i g_i^2 ),   per leaf of shape [a_1, ..., a_k, c]:
        r_i = sum_j g_{i_1..i_k j}^2            (stage 1, [a_1, ..., a_k]: along the minor axis)
        s   = sum_i r_i                         (stage 2, a scalar)

Why two stages: XLA's tree-reduction rewriter turns a float reduction over a long dimension into a
reduce-window of 32 x 32 tiles and a reduction of the tiles, padding a dimension that is not a
multiple of 32. On the CPU (jaxlib 0.10), when the reduced array is a matmul output laid out
[768, 50257] (the output layer's kernel gradient at the GPT-2 vocabulary), that padded
reduce-window runs in XLA's YNNPACK fusion at about 0.01 GFLOP/s: 2.9 s of the 12-layer OWT train
step (batch 2, L = 1024), 9% of its busy time, for a sum that takes 12 ms when its input is a
plain array rather than a matmul output.
XLA folds the obvious rewrites back into the same reduction (a flattened sum, a sum of row sums,
a dot with itself), so stage 1 is closed by an optimization barrier. Measured on a dot-produced
[768, 50257] gradient (`benchmarks/global_norm.py --runs 5`): the whole program 1.77 s instead of
3.84 s; relative error against float64 5.2e-8 (optax's 4.5e-8).

Which axis first (ninth session): the sixth session summed the leading axes first ([c] partial
sums). XLA:CPU then fused both stages of a matmul-produced leaf into one YNNPACK reduction (the
barrier did not keep them apart), 263 ms of the 12-layer step's profile for the output kernel's
[768, 50257] gradient alone. Summing the contiguous minor axis first keeps stage 1 a row
reduction and stage 2 a separate small one: the update alone (norm, clip, AdamW, EMA, guard;
`benchmarks/compare_train_step.py --shape=12layer --update_only --rounds=21`) 606 -> 395 ms.

On GPU and TPU the barrier costs one [c]-sized write per leaf.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def leaf_squared_norm(x: jax.Array) -> jax.Array:
    """sum_i x_i^2 of one array in float32 or wider (the two stages of the module doc)."""
    x = jnp.asarray(x)
    sq = jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))
    if sq.ndim <= 1:
        return jnp.sum(sq)
    partial = jnp.sum(sq, axis=-1)  # [a_1, ..., a_k]
    return jnp.sum(jax.lax.optimization_barrier(partial))


def global_norm(tree: Any) -> jax.Array:
    """||g|| = sqrt(sum over the leaves of `leaf_squared_norm`): optax.tree.norm's value (its
    float32 sum in another order) without XLA:CPU's slow padded tile reduction (module doc)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(sum(leaf_squared_norm(x) for x in leaves))
