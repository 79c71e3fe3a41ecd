"""Test-session settings.

The suite compiles hundreds of tiny programs (one-layer networks, K = 3 toys) and runs each a few
times, so on a CPU most of its time is XLA compilation. The CPU backend's LLVM optimisation
(`--xla_backend_optimization_level`, default 2) costs more compile time than it saves in run time
there, so it is set to 0 here, before JAX starts, for this process and the subprocesses the tests
launch (they inherit the environment); an XLA_FLAGS that already names the option is left as it
is. It changes code generation, not what is computed. Measured on the 2-core CPU: the whole suite
(`-n 2`, fresh clone) took 26 min 49 s at level 2 against 21 min 46 s at level 0 the same day,
although level 2 makes the run-heavy sampler tests 1.3-3x faster (a subset weighted to them: 362 s
at level 2, 378 s at level 1, 421 s at level 0); earlier, test_training_losses.py +
test_methods_duo.py took 103 s at level 0 against 129 s at level 2.

XLA:CPU's MLIR fusion emitters (`--xla_cpu_use_fusion_emitters`, default true) compile the
fused element-wise/reduce kernels more slowly than its older LLVM-IR emitters, so they are turned
off here too (same rule: an XLA_FLAGS that names the option wins). It changes how the kernels are
generated, hence float32 rounding in the last bits, not what is computed; every test passes either
way. Measured on the 2-core CPU (2026-12-06): two configs of test_configs_run.py in one process,
alternating, compiled in 6.3 and 5.9 s against 15.0 and 13.8 s (21-23 s -> 13 s wall;
`python benchmarks/suite_compile_time.py shakespeare_absorbing synthetic_uniform`);
test_sampling_guidance/chunked_loss/prompting/training_losses (`-n 2`, alternating) took 159
and 150 s against 186 and 183 s; the whole suite 10 min 35 s against 16 min 46 s an hour before.

The same small programs are also compiled again and again: by tests in different worker processes
and by the training runs the tests launch as subprocesses (tests/test_main.py, test_train.py,
test_faults.py, ...). JAX's persistent compilation cache, in one fresh directory per test session
(`JAX_COMPILATION_CACHE_DIR`, set before JAX starts and inherited by the xdist workers and the
subprocesses; removed at exit), compiles each of them once: those three files took 103 s against
129 s without it, side by side on 2 cores. Programs that took at least 0.1 s to compile are cached
(`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`, JAX's default 1 s): test_configs_run.py +
test_training_losses.py took 140 and 159 s at 0.1 s against 162 and 167 s at 1 s (alternating
runs, `-n 2`, 2026-12-06). Tracing still happens on every call, so the tests that count traces and
compiles (tests/test_sampling_compiled.py) see the same counts. A JAX_COMPILATION_CACHE_DIR or
threshold already set is used as it is.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

for _flag, _value in (("--xla_backend_optimization_level", "0"),
                      ("--xla_cpu_use_fusion_emitters", "false")):
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_flag}={_value}").strip()

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE_DIR = tempfile.mkdtemp(prefix="dd-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
