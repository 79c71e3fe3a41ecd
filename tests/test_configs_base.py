"""configs/: the shared defaults agree with the library's, and no config imports the library
(reading a config must not load jax; the library's layers point away from configs)."""

from __future__ import annotations

import ast
import os

from configs import base
from discrete_diffusion.data import default_data_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")


def test_base_data_section_equals_the_library_defaults():
    assert base.data_config().to_dict() == default_data_config().to_dict()


def test_no_config_imports_the_library():
    for name in sorted(os.listdir(CONFIG_DIR)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(CONFIG_DIR, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] == "discrete_diffusion" for m in modules), (name, modules)
