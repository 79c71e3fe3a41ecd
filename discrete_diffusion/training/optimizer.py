"""Optimizers from `config.training`, and per-group optimizers for a method's parameters.

    tx = make_optimizer(config.training)   # clip_by_global_norm(clip_norm), then AdamW with
                                           # linear warmup to learning_rate, 'constant' or 'cosine'
    tx = by_top_level_key({'schedule': optax.adam(1e-2), 'teacher': optax.set_to_zero()}, tx)
        # a method's own optimizer for the parameters under params['schedule'] / params['teacher']
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from discrete_diffusion import param_groups
from discrete_diffusion.training.global_norm import global_norm

LR_SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(tc: Any) -> optax.Schedule:
    """Linear warmup to `learning_rate`, then 'constant' or 'cosine' decay to 0 at num_steps."""
    lr, warmup = float(tc.learning_rate), int(tc.warmup_steps)
    name = tc.get("lr_schedule", "constant")
    if name == "constant":
        after = optax.constant_schedule(lr)
    elif name == "cosine":
        after = optax.cosine_decay_schedule(lr, max(1, int(tc.num_steps) - warmup))
    else:
        raise ValueError(f"config.training.lr_schedule={name!r} is not one of {list(LR_SCHEDULES)}")
    if warmup <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """optax.clip_by_global_norm with the factor formed once: n = ||g|| over the whole tree
    (`global_norm.global_norm`: optax.tree.norm's value, summed in an order that XLA:CPU runs fast),

        g~ = g                   if n < max_norm
        g~ = g * (max_norm / n)  otherwise

    (optax writes (g / n) * max_norm, the same up to float rounding). A product with a scalar is
    work that XLA repeats inside every loop that reads g~ (the Adam moments, the finiteness
    check), where optax's division per element is kept in memory as a whole clipped copy of the
    gradients (2 more passes over the parameters per step, and each reader reads both g and the
    copy). The state is optax's EmptyState, as optax's."""

    def update_fn(updates, state, params=None):
        del params
        norm = global_norm(updates)
        trigger = jnp.squeeze(norm < max_norm)
        factor = max_norm / norm
        updates = jax.tree.map(
            lambda t: jax.lax.select(trigger, t, t * factor.astype(t.dtype)), updates)
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def make_optimizer(tc: Any) -> optax.GradientTransformation:
    """clip_by_global_norm (if clip_norm > 0) then AdamW with `learning_rate_schedule(tc)`."""
    parts = []
    if tc.get("clip_norm", 0.0):
        parts.append(clip_by_global_norm(float(tc.clip_norm)))
    parts.append(
        optax.adamw(
            learning_rate_schedule(tc), b1=float(tc.get("adam_b1", 0.9)),
            b2=float(tc.get("adam_b2", 0.999)), weight_decay=float(tc.weight_decay),
        )
    )
    return optax.chain(*parts)


# one layer below `methods` and `training` (param_groups.py): methods build their optimizers with it
by_top_level_key = param_groups.by_top_level_key
