"""Optimizers from `config.training`, and per-group optimizers for a method's parameters.

    tx = make_optimizer(config.training)   # clip_by_global_norm(clip_norm), then AdamW with
                                           # linear warmup to learning_rate, 'constant' or 'cosine'
    tx = by_top_level_key({'schedule': optax.adam(1e-2), 'teacher': optax.set_to_zero()}, tx)
        # a method's own optimizer for the parameters under params['schedule'] / params['teacher']
"""

from __future__ import annotations

from typing import Any

import optax

from discrete_diffusion import param_groups

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


def make_optimizer(tc: Any) -> optax.GradientTransformation:
    """clip_by_global_norm (if clip_norm > 0) then AdamW with `learning_rate_schedule(tc)`."""
    parts = []
    if tc.get("clip_norm", 0.0):
        parts.append(optax.clip_by_global_norm(float(tc.clip_norm)))
    parts.append(
        optax.adamw(
            learning_rate_schedule(tc), b1=float(tc.get("adam_b1", 0.9)),
            b2=float(tc.get("adam_b2", 0.999)), weight_decay=float(tc.weight_decay),
        )
    )
    return optax.chain(*parts)


# one layer below `methods` and `training` (param_groups.py): methods build their optimizers with it
by_top_level_key = param_groups.by_top_level_key
