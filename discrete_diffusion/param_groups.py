"""Optimizers per top-level parameter group, for methods with more than one kind of parameter
(e.g. methods/learned_order.py: Adam on its schedule, the config's optimizer on the network).

Below both `methods` and `training` (training.optimizer re-exports it), so a method's optimizer
needs no import of `training`."""

from __future__ import annotations

from typing import Any

import optax


def by_top_level_key(groups: dict[str, optax.GradientTransformation],
                     default: optax.GradientTransformation) -> optax.GradientTransformation:
    """`groups[k]` for the parameters under params[k], `default` for every other top-level key
    (optax.multi_transform labelled by the params dict's top-level keys)."""

    def labels(params: Any) -> dict[str, str]:
        return {k: (k if k in groups else "default") for k in params}

    return optax.multi_transform({**groups, "default": default}, labels)


__all__ = ["by_top_level_key"]
