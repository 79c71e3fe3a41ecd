"""Orbax's background-thread errors, shortened: one line per run instead of a traceback per thread.

    with quiet_orbax.errors_shortened():
        ...  # a failed asynchronous save logs one 'orbax: ...' line; the run's own error follows

A checkpoint save that fails (a full disk) is logged by every orbax thread involved, each with
its traceback (hundreds of lines), before the training loop raises its own one-line error
(`faults.CheckpointWriteError`). The filter keeps orbax's first ERROR record, as one line without
its traceback, and drops the rest; other loggers and levels are untouched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class OrbaxErrorFilter(logging.Filter):
    """Passes orbax's first ERROR record, shortened to one line; drops orbax's later ones."""

    def __init__(self, limit: int = 300):
        super().__init__()
        self.limit, self.seen = limit, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or "orbax" not in (record.pathname or ""):
            return True
        self.seen += 1
        if self.seen > 1:
            return False
        text = " ".join(record.getMessage().split())
        if len(text) > self.limit:
            text = text[: self.limit - 3] + "..."
        record.msg, record.args = f"orbax: {text}", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


@contextlib.contextmanager
def errors_shortened() -> Iterator[OrbaxErrorFilter]:
    """Installs `OrbaxErrorFilter` on the 'absl' logger (orbax logs through absl) for the block."""
    target = logging.getLogger("absl")
    flt = OrbaxErrorFilter()
    target.addFilter(flt)
    try:
        yield flt
    finally:
        target.removeFilter(flt)


__all__ = ["OrbaxErrorFilter", "errors_shortened"]
