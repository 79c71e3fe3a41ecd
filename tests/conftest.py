"""Test-session settings.

The suite compiles hundreds of tiny programs (one-layer networks, K = 3 toys) and runs some of
them many times (the samplers' exactness tests draw 20,000 samples over up to 1000 steps). XLA's
CPU backend runs at its default LLVM optimisation level: level 0 (`--xla_backend_optimization_level=0`,
set here earlier to save compile time) made the run-heavy tests 1.3-3x slower, and a mix of
both kinds (test_configs_run on 4 configs, test_training_losses, test_sampling_prompting,
test_sampling_guidance, test_sampling_score, test_methods_duo; `-n 2`, one after the other on the
2-core CPU) took 421 s at level 0, 378 s at level 1 and 362 s at level 2, the default.

The same small programs are also compiled again and again: by tests in different worker processes
and by the training runs the tests launch as subprocesses (tests/test_main.py, test_train.py,
test_faults.py, ...). JAX's persistent compilation cache, in one fresh directory per test session
(`JAX_COMPILATION_CACHE_DIR`, set before JAX starts and inherited by the xdist workers and the
subprocesses; removed at exit), compiles each of them once: those three files took 103 s against
129 s without it, side by side on 2 cores. Only programs that took at least a second to compile are
cached (JAX's default threshold), and tracing still happens on every call, so the tests that count
traces and compiles (tests/test_sampling_compiled.py) see the same counts. A JAX_COMPILATION_CACHE_DIR
already set is used as it is.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE_DIR = tempfile.mkdtemp(prefix="dd-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
