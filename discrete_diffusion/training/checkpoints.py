"""Orbax checkpoints of the train state and the data iterator (workdir/checkpoints/<step>).

Each checkpoint holds three items: `state` (the `TrainState`), `data` (the data iterator's state)
and `meta` ({'step'}). Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp` and renames it
to `<step>` once complete, so a process killed mid-save (even by SIGKILL) leaves the previous
checkpoints intact and a temporary directory that is ignored, then replaced by the next save.

`restore_latest_readable` resumes from the newest checkpoint that can be read: one that cannot
(truncated or undecodable files, an item missing, shapes or tree structure that do not match the
config, non-finite values) is reported with its step and reason and, when `set_aside` is True,
renamed to `checkpoints/corrupt/<step>-<reason>` (never deleted), and the next older one is tried.
Shapes or a tree structure that do not match (MISMATCH_REASONS) are a config mismatch, not
corruption: reported, never renamed (`config_drift` refuses such a config before this is reached).

`save_checkpoint` refuses a state with a non-finite value, so the rotation of
`config.training.max_checkpoints` never drops the last good checkpoint for a bad one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

from discrete_diffusion.training.faults import is_finite_state
from discrete_diffusion.training.state import TrainState

ITEMS = ("state", "data", "meta")
CORRUPT_DIR = "corrupt"
# A checkpoint that does not fit the config's model is not corrupt: it is never set aside.
MISMATCH_REASONS = ("shape-mismatch", "structure-mismatch")


def checkpoint_dir(workdir: str) -> str:
    """workdir/checkpoints (absolute)."""
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def checkpoint_manager(workdir: str, config: Any) -> ocp.CheckpointManager:
    """Asynchronous manager keeping `config.training.max_checkpoints` checkpoints."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(config.training.get("max_checkpoints", 2)), create=True,
        enable_async_checkpointing=True,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save_checkpoint(mngr: ocp.CheckpointManager, state: TrainState, data_iter: Any, *,
                    finite: bool | None = None) -> bool:
    """Saves (asynchronously) the state, the data iterator's state and the step.

    Returns False, writing nothing, when `state` holds a non-finite value (a checkpoint is only
    ever written from a finite state). `finite=True` skips that check when the caller knows
    (the training loop: a state restored and checked, or left by finite train steps, which
    `Trainer` guarantees finite); None checks (a jitted reduction over the state)."""
    step = int(jax.device_get(state.step))
    if not (is_finite_state(state) if finite is None else finite):
        print(f"not saving a checkpoint at step {step}: the train state holds non-finite values "
              f"(the newest checkpoint stays {mngr.latest_step()})", flush=True)
        return False
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
    return True


def _abstract(state: Any) -> Any:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), state
    )


def restore_checkpoint(
    mngr: ocp.CheckpointManager, state: TrainState, data_iter: Any = None, step: int | None = None
) -> tuple[TrainState, bool]:
    """Restores `step` (default the latest) into the shapes/shardings of `state`.

    `state` is a concrete state or `Trainer.abstract_state()`: either way the checkpoint is read
    straight into its shardings, so a checkpoint written on one mesh (or number of processes)
    restores onto another. Returns (`state` unchanged, False) when there is no checkpoint; raises
    whatever orbax raises when the checkpoint cannot be read (see `restore_latest_readable`).
    The data iterator's state is set only once every item was read.
    """
    step = mngr.latest_step() if step is None else step
    if step is None:
        return state, False
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(state)), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore(),
        ),
    )
    if data_iter is not None and restored.data:
        data_iter.set_state(restored.data)
    return restored.state, True


# ----------------------------------------------------------------------------- unreadable ones


class CheckpointReadError(Exception):
    """A checkpoint that cannot be resumed from: `reason` is a short slug (used in the name it
    is set aside under), `detail` the underlying error."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _classify(err: Exception) -> str:
    """A short reason for an orbax/tensorstore restore error."""
    msg = str(err)
    low = msg.lower()
    if isinstance(err, KeyError) and "was not found in the checkpoint" in msg:
        return "missing-item"
    if "not compatible with the stored shape" in msg or "shape mismatch" in low:
        return "shape-mismatch"
    if "tree structure" in low or "pytreedef" in low or "does not match" in low:
        return "structure-mismatch"
    if isinstance(err, (json.JSONDecodeError, UnicodeDecodeError, EOFError)) or any(
        s in msg for s in ("DATA_LOSS", "OUT_OF_RANGE", "Error decoding", "Error reading")
    ):
        return "truncated"
    if isinstance(err, FileNotFoundError):
        return "missing-file"
    return "unreadable"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(mngr: ocp.CheckpointManager, state: Any, step: int) -> Any:
    """The restored Composite of `step`, or CheckpointReadError."""
    path = os.path.join(str(mngr.directory), str(step))
    present = set(os.listdir(path)) if os.path.isdir(path) else set()
    missing = [i for i in ITEMS if i not in present]
    if missing:
        raise CheckpointReadError("missing-item", f"item(s) {missing} missing from {path} "
                                   f"(present: {sorted(present)})")
    try:
        restored = mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(state)), data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
    except Exception as err:  # noqa: BLE001 - any failure to read makes the checkpoint unusable
        raise CheckpointReadError(_classify(err), f"{type(err).__name__}: {_one_line(err)}") from err
    saved_step = int(jax.device_get(restored.state.step))
    meta_step = (restored.meta or {}).get("step", step)
    if saved_step != step or int(meta_step) != step:
        raise CheckpointReadError("step-mismatch", f"directory {step} holds state.step="
                                   f"{saved_step} and meta.step={meta_step}")
    if not is_finite_state(restored.state):
        raise CheckpointReadError("nonfinite", "the saved train state holds NaN or inf values")
    return restored


def set_aside(directory: str, step: int, reason: str) -> str:
    """Renames checkpoint `directory/<step>` to `directory/corrupt/<step>-<reason>` (with a
    numeric suffix if that name is taken) and returns the new path. Nothing is deleted."""
    dst_dir = os.path.join(directory, CORRUPT_DIR)
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, f"{step}-{reason}")
    n = 1
    while os.path.exists(dst):
        dst = os.path.join(dst_dir, f"{step}-{reason}-{n}")
        n += 1
    os.rename(os.path.join(directory, str(step)), dst)
    return dst


@dataclasses.dataclass
class RestoreResult:
    """What `restore_latest_readable` found: the restored `state` (the given one when `step`
    is None), the step restored, and each unreadable checkpoint as (step, reason, detail, where
    it now lies)."""

    state: Any
    step: int | None
    unreadable: list[tuple[int, str, str, str]]

    def describe_unreadable(self) -> str:
        return "; ".join(f"step {s} ({r}: {d}) -> {p}" for s, r, d, p in self.unreadable)


def restore_latest_readable(
    mngr: ocp.CheckpointManager, state: Any, data_iter: Any = None, *, set_aside_bad: bool = True,
    log: Callable[[str], None] | None = None,
) -> RestoreResult:
    """Restores the newest readable checkpoint of `mngr` into the shapes/shardings of `state`.

    Newest first, each checkpoint is read whole (every item, the shapes of `state`, finite
    values); one that cannot be is reported through `log` (default: print) with its step and
    reason, renamed to `checkpoints/corrupt/<step>-<reason>` when `set_aside_bad` (process 0 does
    the renaming; every process reads the same files, so all reach the same verdict) and skipped.
    The data iterator's state is set from the checkpoint restored. `result.step` is None when
    nothing was restored (no checkpoint, or none readable: see `result.unreadable`).
    """
    log = log or (lambda msg: print(msg, flush=True))
    directory = str(mngr.directory)
    unreadable: list[tuple[int, str, str, str]] = []
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            restored = _read(mngr, state, step)
        except CheckpointReadError as bad:
            where = os.path.join(directory, str(step))
            move = set_aside_bad and bad.reason not in MISMATCH_REASONS
            if move:
                _barrier("discrete_diffusion:checkpoint_read")  # every process is done reading it
                if jax.process_index() == 0:
                    where = set_aside(directory, step, bad.reason)
                else:
                    where = os.path.join(directory, CORRUPT_DIR, f"{step}-{bad.reason}")
            unreadable.append((step, bad.reason, bad.detail, where))
            action = (f"set aside as {where}" if move else "left in place (a config mismatch, "
                      "not corruption)" if bad.reason in MISMATCH_REASONS else "skipped")
            log(f"checkpoint step {step} cannot be read ({bad.reason}: {bad.detail}); {action}")
            continue
        if data_iter is not None and restored.data:
            data_iter.set_state(restored.data)
        if unreadable and set_aside_bad:
            _sync_and_reload(mngr)
        return RestoreResult(restored.state, step, unreadable)
    if unreadable and set_aside_bad:
        _sync_and_reload(mngr)
    return RestoreResult(state, None, unreadable)


def _barrier(name: str) -> None:
    """All processes meet here (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _sync_and_reload(mngr: ocp.CheckpointManager) -> None:
    """After process 0 renamed checkpoints: every process waits for it, then re-lists the steps
    (so rotation never tries to delete one that was set aside)."""
    _barrier("discrete_diffusion:checkpoints_set_aside")
    mngr.reload()


__all__ = ["CORRUPT_DIR", "ITEMS", "MISMATCH_REASONS", "CheckpointReadError", "RestoreResult",
           "checkpoint_dir",
           "checkpoint_manager", "restore_checkpoint", "restore_latest_readable", "save_checkpoint",
           "set_aside"]
