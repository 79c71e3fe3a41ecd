"""Run directories for tests: `initial_checkpoint(config, workdir)` writes what a training run
leaves behind (workdir/config.json and a checkpoint) for the untrained initial state, without
compiling a train step. A stand-in for a trained run where only its files matter (a teacher to
distil, a judge whose weights are irrelevant)."""

from __future__ import annotations

import os
from typing import Any


def initial_checkpoint(config: Any, workdir: str) -> str:
    """Writes workdir/config.json (resolved, as `training.train_and_evaluate` does) and the
    step-0 state of `config` (seed config.training.seed) as workdir/checkpoints/0; returns workdir."""
    from discrete_diffusion.training import checkpoints, loop

    config, data, trainer = loop.setup(config)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    state = trainer.init_state(int(config.training.seed))
    mngr = checkpoints.checkpoint_manager(workdir, config)
    try:
        checkpoints.save_checkpoint(mngr, state, data.train_iter, finite=True)
        mngr.wait_until_finished()
    finally:
        mngr.close()
    return workdir


__all__ = ["initial_checkpoint"]
