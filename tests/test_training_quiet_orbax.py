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
