"""Faults that stop a run: unreadable checkpoints and non-finite training steps.

    faults.tree_all_finite(tree)          # scalar bool: every float leaf finite (jit-friendly)
    monitor = faults.NonFiniteMonitor(max_nonfinite_steps=3)
    monitor.record(step, health)          # health = the train step's {'finite', 'loss', 'grad_norm'}
                                          # raises NonFiniteTrainingError after 3 in a row

`python -m discrete_diffusion.main` turns a `TrainingStoppedError` into a message on stderr and the
error's `exit_code` (1: an unusable workdir; 3: non-finite steps; 4: no readable checkpoint;
5: a config that changes the model of the workdir (`config_drift`); 6: the workdir is locked by
another run (`workdir_lock`); 7: a checkpoint could not be written; 8: the training data could
not be read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class TrainingStoppedError(RuntimeError):
    """A fault after which the run must not go on; `exit_code` is the process's exit status."""

    exit_code = 1


class NonFiniteTrainingError(TrainingStoppedError):
    """`config.training.max_nonfinite_steps` consecutive train steps had a non-finite loss or
    gradient norm (their updates were skipped)."""

    exit_code = 3


class UnreadableCheckpointError(TrainingStoppedError):
    """Checkpoints exist but none of them can be read (they were set aside), and
    `config.training.start_fresh_if_unreadable` is False."""

    exit_code = 4


class CheckpointWriteError(TrainingStoppedError):
    """A checkpoint could not be written (a full disk, ...); the newest complete checkpoint
    before it is kept (orbax writes into a temporary directory first)."""

    exit_code = 7


class DataReadError(TrainingStoppedError):
    """The training data could not be read mid-run (a truncated or missing file); the state of
    the last step was saved first."""

    exit_code = 8


def tree_all_finite(tree: Any) -> jax.Array:
    """A scalar bool array: True iff every floating-point leaf of `tree` is finite (integer and
    other leaves count as finite). Usable inside and outside `jax.jit`."""
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    if not checks:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(checks))


_all_finite_jit = jax.jit(tree_all_finite)


def is_finite_state(tree: Any) -> bool:
    """`tree_all_finite` on the host, as a Python bool (a jitted reduction, then one fetch)."""
    return bool(jax.device_get(_all_finite_jit(tree)))


class NonFiniteMonitor:
    """Counts consecutive non-finite train steps from the step's `health` outputs.

    `record(step, health)` fetches `health['finite']` (so call it one step late to keep a step
    in flight), logs each skipped step with the running counts through `log`, and raises
    `NonFiniteTrainingError` when `max_nonfinite_steps` steps in a row were non-finite. The
    message names the step and `last_good_checkpoint()` (a callable giving a description of the
    newest checkpoint written from a finite state).
    """

    def __init__(self, max_nonfinite_steps: int, last_good_checkpoint: Callable[[], str],
                 log: Callable[[int, dict[str, float]], None] | None = None):
        if isinstance(max_nonfinite_steps, bool) or int(max_nonfinite_steps) < 1:
            raise ValueError(
                f"config.training.max_nonfinite_steps={max_nonfinite_steps!r} must be an integer >= 1"
            )
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.last_good_checkpoint = last_good_checkpoint
        self.log = log
        self.consecutive = 0
        self.total = 0
        self.last_finite_step: int | None = None
        self._pending: list[tuple[int, dict[str, jax.Array]]] = []

    def push(self, step: int, health: dict[str, jax.Array], keep: int = 1) -> None:
        """Queues step `step`'s health and records all but the newest `keep` queued steps."""
        self._pending.append((int(step), health))
        self.flush(keep)

    def flush(self, keep: int = 0) -> None:
        """Records the queued steps, all but the newest `keep`."""
        while len(self._pending) > keep:
            step, health = self._pending.pop(0)
            self.record(step, health)

    @property
    def in_streak(self) -> bool:
        """True when the last recorded step was non-finite (its update was skipped)."""
        return self.consecutive > 0

    def record(self, step: int, health: dict[str, jax.Array]) -> None:
        """Records step `step` (1-based: the step count after it); raises after too many."""
        h = {k: np.asarray(v) for k, v in jax.device_get(health).items()}
        if bool(h["finite"]):
            self.consecutive = 0
            self.last_finite_step = step
            return
        self.consecutive += 1
        self.total += 1
        loss, gnorm = float(h["loss"]), float(h["grad_norm"])
        print(f"step {step}: non-finite loss={loss:.4g} or grad_norm={gnorm:.4g}; the parameters "
              f"were not updated ({self.consecutive} consecutive, {self.total} in this run, "
              f"config.training.max_nonfinite_steps={self.max_nonfinite_steps})", flush=True)
        if self.log is not None:
            self.log(step, {"nonfinite_consecutive": self.consecutive,
                            "nonfinite_total": self.total, "loss": loss, "grad_norm": gnorm})
        if self.consecutive >= self.max_nonfinite_steps:
            good = ("none (no step was finite)" if self.last_finite_step is None
                    else f"step {self.last_finite_step}")
            raise NonFiniteTrainingError(
                f"training stopped at step {step}: {self.consecutive} consecutive steps with a "
                f"non-finite loss or gradient norm (config.training.max_nonfinite_steps="
                f"{self.max_nonfinite_steps}; last: loss={loss:.4g}, grad_norm={gnorm:.4g}); "
                f"the parameters are those of the last finite step ({good}); last good "
                f"checkpoint: {self.last_good_checkpoint()}. Lower "
                "config.training.learning_rate or check the data, then resume from it."
            )


__all__ = ["CheckpointWriteError", "DataReadError", "NonFiniteMonitor", "NonFiniteTrainingError",
           "TrainingStoppedError",
           "UnreadableCheckpointError", "is_finite_state", "tree_all_finite"]
