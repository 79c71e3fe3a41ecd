"""Test-session settings.

The suite compiles hundreds of tiny programs (one-layer networks, K = 3 toys) and runs each a few
times, so on a CPU most of its time is XLA compilation. The CPU backend's LLVM optimisation
(`--xla_backend_optimization_level`, default 2) costs more compile time than it saves in run time
there: level 0 made tests/test_training_losses.py + tests/test_methods_duo.py 20% faster on
2 cores (103 s against 129 s, run side by side) with identical results (the golden-loss test
included). It changes code generation, not what is computed. Set here, before JAX starts, for this
process and the subprocesses the tests launch (they inherit the environment); an XLA_FLAGS that
already names the option is left as it is.
"""

from __future__ import annotations

import os

_FLAG = "--xla_backend_optimization_level"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=0").strip()
