"""What a training run leaves in its workdir, read without building its method or trainer: its
config.json and the parameters of its newest readable checkpoint, as host arrays.

A layer below both `methods` and `training`: a method that starts from another run's weights
(methods/duo_distill.py, its teacher) reads them here, so `methods` never imports `training`
(which imports `methods`); tests/test_run_files.py fails if that import circle comes back.

Layout (written by training/checkpoints.py and training/loop.py):

    workdir/config.json                        the resolved config (`load_config`)
    workdir/checkpoints/<step>/state           the TrainState pytree (orbax): params, ema_params, ...

`load_params(workdir, which)` restores the `state` item of the newest checkpoint without a target
(the saved tree, as host arrays) and returns its `which` ('ema_params' or 'params') sub-tree; a
checkpoint that cannot be read or holds a non-finite value is skipped for the next older one, as
`training.restore_latest_readable(set_aside_bad=False)` does for a resume.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
STATE_ITEM = "state"
PARAM_TREES = ("ema_params", "params")


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a run saved as workdir/config.json (tuples come back as lists)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} the --workdir of a training run?")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps of the complete checkpoints in workdir/checkpoints, newest first (orbax's
    `<step>.orbax-checkpoint-tmp` directories of an unfinished save are not steps)."""
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
    if not os.path.isdir(directory):
        return []
    return sorted((int(d) for d in os.listdir(directory) if d.isdigit()), reverse=True)


def _all_finite(tree: Any) -> bool:
    return all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.inexact))


def load_params(workdir: str, which: str = "ema_params") -> tuple[Any, int]:
    """(host copy of the `which` tree of the newest readable checkpoint, its step).

    `which` in PARAM_TREES. FileNotFoundError when no checkpoint is readable (each unreadable one
    named with its reason)."""
    import orbax.checkpoint as ocp

    if which not in PARAM_TREES:
        raise ValueError(f"which={which!r} is not one of {list(PARAM_TREES)}")
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
    problems = []
    for step in checkpoint_steps(workdir):
        path = os.path.join(directory, str(step), STATE_ITEM)
        try:
            state = ocp.PyTreeCheckpointer().restore(path)
            tree = jax.tree.map(np.asarray, jax.device_get(state[which]))
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: try the older one
            problems.append(f"{step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        if not _all_finite(tree):
            problems.append(f"{step}: non-finite values")
            continue
        return tree, step
    detail = f": none readable ({'; '.join(problems)})" if problems else ""
    raise FileNotFoundError(f"no checkpoint in {directory}{detail}")


__all__ = ["CHECKPOINTS", "CONFIG_FILE", "PARAM_TREES", "STATE_ITEM", "checkpoint_steps",
           "load_config", "load_params"]
