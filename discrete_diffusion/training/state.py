"""The train state: everything a checkpoint holds besides the data iterator."""

from __future__ import annotations

from typing import Any

import flax
import jax


@flax.struct.dataclass
class TrainState:
    """step; params (the method's pytree, e.g. {'network': ...}); their EMA; the optimizer state;
    rng: a legacy uint32[2] key, the key of step s is fold_in(rng, s)."""

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array
