"""Orbax checkpoints of the train state and the data iterator (workdir/checkpoints/<step>)."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from discrete_diffusion.training.state import TrainState


def checkpoint_manager(workdir: str, config: Any) -> ocp.CheckpointManager:
    """Asynchronous manager keeping `config.training.max_checkpoints` checkpoints."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(config.training.get("max_checkpoints", 2)), create=True,
        enable_async_checkpointing=True,
    )
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def save_checkpoint(mngr: ocp.CheckpointManager, state: TrainState, data_iter: Any) -> None:
    """Saves (asynchronously) the state, the data iterator's state and the step."""
    step = int(jax.device_get(state.step))
    data_state = data_iter.get_state() if data_iter is not None else {}
    mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave({"step": step}),
        ),
        force=True,
    )


def restore_checkpoint(
    mngr: ocp.CheckpointManager, state: TrainState, data_iter: Any = None, step: int | None = None
) -> tuple[TrainState, bool]:
    """Restores `step` (default the latest) into the shapes/shardings of `state`.

    `state` is a concrete state or `Trainer.abstract_state()`: either way the checkpoint is read
    straight into its shardings, so a checkpoint written on one mesh (or number of processes)
    restores onto another. Returns (`state` unchanged, False) when there is no checkpoint.
    """
    step = mngr.latest_step() if step is None else step
    if step is None:
        return state, False
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), state
    )
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore(),
        ),
    )
    if data_iter is not None and restored.data:
        data_iter.set_state(restored.data)
    return restored.state, True
