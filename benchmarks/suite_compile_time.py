"""XLA compile time of the test suite's end-to-end config runs under the current XLA_FLAGS: runs
tests/test_configs_run.py's test for the named configs in this process, with the test session's
settings (tests/conftest.py) but no persistent compilation cache, and sums the time of every
'Finished XLA compilation' that jax logs.

    python benchmarks/suite_compile_time.py shakespeare_absorbing synthetic_uniform
    XLA_FLAGS=--xla_cpu_use_fusion_emitters=true python benchmarks/suite_compile_time.py \
        shakespeare_absorbing synthetic_uniform   # conftest leaves an option you name as it is

Prints one line: the flags in effect, the summed compile time and the wall time. Alternate runs
with and without a flag to compare (the machine's load moves both).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]
os.environ["JAX_COMPILATION_CACHE_DIR"] = ""  # conftest keeps a set value; '' = no cache dir

import conftest  # noqa: E402,F401  (sets XLA_FLAGS before jax starts)
import jax  # noqa: E402

jax.config.update("jax_enable_compilation_cache", False)
jax.config.update("jax_log_compiles", True)


class _CompileTime(logging.Handler):
    """Sums the seconds of jax's 'Finished XLA compilation of ... in S sec' log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"Finished XLA compilation of .* in ([0-9.]+) sec", record.getMessage())
        if m:
            self.seconds += float(m.group(1))


def main(names: list[str]) -> None:
    import test_configs_run

    handler = _CompileTime()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # the per-program lines are summed, not printed
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        for name in names:
            test_configs_run.test_config_trains_evaluates_and_samples(
                name, pathlib.Path(tempfile.mkdtemp()))
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}: compile {handler.seconds:.2f} s, "
          f"wall {time.perf_counter() - t0:.2f} s ({', '.join(names)}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
