"""Orbax's background-thread errors, shortened: one line per run instead of a traceback per thread.

    with quiet_orbax.errors_shortened():
        ...  # a failed asynchronous save logs one 'orbax: ...' line; the run's own error follows

A checkpoint save that fails (a full disk) is logged by every orbax thread involved, each with
its traceback (hundreds of lines), before the training loop raises its own one-line error
(`faults.CheckpointWriteError`). The filter keeps orbax's first ERROR record, as one line without
its traceback, and drops the rest; other loggers and levels are untouched. Tensorstore callbacks
of the failed save then print tracebacks ending in 'Event loop is closed' straight to sys.stderr
(up to dozens, by timing): `closed_loop_tracebacks_dropped` drops those and says how many.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
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


class ClosedLoopTracebackFilter:
    """A text stream over `target` that drops whole tracebacks ending in 'RuntimeError: Event
    loop is closed' (printed straight to sys.stderr by tensorstore callbacks of a failed orbax
    save after its event loop closed, dozens of them) and counts them; everything else passes."""

    END = "RuntimeError: Event loop is closed"

    def __init__(self, target):
        self.target, self.dropped = target, 0
        self._pending, self._block = "", None
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            while "\n" in self._pending:
                line, self._pending = self._pending.split("\n", 1)
                self._line(line + "\n")
        return len(text)

    def _line(self, line: str) -> None:
        if self._block is None:
            if line.startswith("Traceback (most recent call last):"):
                self._block = [line]
            else:
                self.target.write(line)
            return
        self._block.append(line)
        if line.strip() and line[0] not in " \t":  # the exception line ends the traceback
            if line.startswith(self.END):
                self.dropped += 1
            else:
                self.target.write("".join(self._block))
            self._block = None

    def flush(self) -> None:
        with self._lock:
            if self._block is None and self._pending:
                self.target.write(self._pending)
                self._pending = ""
        self.target.flush()

    def __getattr__(self, name: str):
        return getattr(self.target, name)


@contextlib.contextmanager
def closed_loop_tracebacks_dropped() -> Iterator[ClosedLoopTracebackFilter]:
    """sys.stderr through `ClosedLoopTracebackFilter` for the block; one line at the end says how
    many tracebacks were dropped (nothing is dropped silently)."""
    flt = ClosedLoopTracebackFilter(sys.stderr)
    sys.stderr = flt
    try:
        yield flt
    finally:
        sys.stderr = flt.target
        if flt._block:
            flt.target.write("".join(flt._block))
        if flt.dropped:
            print(f"({flt.dropped} 'Event loop is closed' tracebacks of orbax's failed save "
                  "threads not shown)", file=sys.stderr, flush=True)


__all__ = ["ClosedLoopTracebackFilter", "OrbaxErrorFilter", "closed_loop_tracebacks_dropped",
           "errors_shortened"]
