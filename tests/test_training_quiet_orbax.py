"""quiet_orbax: orbax's first ERROR record is one line without its traceback; later ones dropped."""

from __future__ import annotations

import logging
import sys

from discrete_diffusion.training import quiet_orbax


def _record(path: str, level: int, msg: str) -> logging.LogRecord:
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        exc = sys.exc_info()
    return logging.getLogger("absl").makeRecord("absl", level, path, 1, msg, (), exc)


def test_orbax_errors_are_shortened_to_one_line(capsys):
    handler = logging.StreamHandler(sys.stderr)
    absl = logging.getLogger("absl")
    absl.addHandler(handler)
    try:
        with quiet_orbax.errors_shortened():
            for _ in range(3):  # three threads report the same failed save
                absl.handle(_record("/site-packages/orbax/checkpoint/future.py", logging.ERROR,
                                    "thread raised:\nRESOURCE_EXHAUSTED: No space left on device"))
            absl.handle(_record("/somewhere/else.py", logging.ERROR, "kept\nas it is"))
        absl.handle(_record("/site-packages/orbax/x.py", logging.ERROR, "after the block"))
    finally:
        absl.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("RESOURCE_EXHAUSTED") == 1
    assert "orbax: thread raised: RESOURCE_EXHAUSTED: No space left on device\n" in err
    assert err.count("Traceback") == 2  # the other logger's record and the one after the block
    assert "kept\nas it is" in err and "after the block" in err


def test_closed_event_loop_tracebacks_are_dropped_and_counted(capsys):
    closed = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
              "RuntimeError: Event loop is closed\n")
    other = "Traceback (most recent call last):\n  File \"y.py\", line 2, in h\nValueError: kept\n"
    with quiet_orbax.closed_loop_tracebacks_dropped():
        for _ in range(5):
            for part in (closed[:30], closed[30:]):  # written in pieces, as C callbacks do
                sys.stderr.write(part)
        sys.stderr.write(other)
        sys.stderr.write("a plain line\n")
    err = capsys.readouterr().err
    assert "Event loop is closed" not in err.replace("'Event loop is closed' tracebacks", "")
    assert other in err and "a plain line\n" in err
    assert "(5 'Event loop is closed' tracebacks of orbax's failed save threads not shown)" in err
