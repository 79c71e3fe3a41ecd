"""run_files.py: a run's config and checkpoint parameters read without its trainer (the same
arrays `training.load_state` restores), and the layering it exists for: no module of
discrete_diffusion/methods (nor run_files / param_groups, below both) imports
discrete_diffusion.training, at module level or inside a function."""

from __future__ import annotations

import ast
import os
import shutil
import sys

import jax
import numpy as np
import pytest

from discrete_diffusion import run_files, training
from discrete_diffusion.testing import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "discrete_diffusion")
sys.path.insert(0, ROOT)
from configs import synthetic_uniform  # noqa: E402

BELOW_TRAINING = [os.path.join(PACKAGE, "methods", f) for f in
                  sorted(os.listdir(os.path.join(PACKAGE, "methods"))) if f.endswith(".py")]
BELOW_TRAINING += [os.path.join(PACKAGE, f) for f in ("run_files.py", "param_groups.py")]


def training_imports(path: str) -> list[str]:
    """'line: statement' of every import of discrete_diffusion.training in the file (any depth)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if any(n == "discrete_diffusion.training" or n.startswith("discrete_diffusion.training.")
               for n in names):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_methods_do_not_import_training(tmp_path):
    """training/trainer.py imports methods/; the other way round is an import circle."""
    assert len(BELOW_TRAINING) > 8
    bad = {os.path.relpath(p, ROOT): training_imports(p) for p in BELOW_TRAINING}
    bad = {p: lines for p, lines in bad.items() if lines}
    assert not bad, bad
    # the check sees both forms the circle took (module level and inside a function)
    probe = tmp_path / "probe.py"
    probe.write_text("from discrete_diffusion import training\n"
                     "def f():\n    from discrete_diffusion.training.optimizer import by_top_level_key\n")
    assert len(training_imports(str(probe))) == 2


def _tiny_run(path: str) -> str:
    config = synthetic_uniform.get_config()
    config.model.num_layers, config.model.d_model, config.model.num_heads = 1, 16, 2
    config.model.cond_dim = 8
    config.data.seq_len = 8
    config.training.batch_size = 2
    config.data.num_train_sequences, config.data.num_eval_sequences = 16, 4
    return runs.initial_checkpoint(config, path)


def test_load_params_reads_what_load_state_restores_and_skips_unreadable(tmp_path):
    wd = _tiny_run(str(tmp_path / "run"))
    config = run_files.load_config(wd)
    assert config.to_dict() == training.load_config(wd).to_dict()
    _, _, _, state = training.load_state(config, wd)
    for which in run_files.PARAM_TREES:
        tree, step = run_files.load_params(wd, which)
        assert step == 0
        jax.tree.map(np.testing.assert_array_equal, tree, jax.device_get(getattr(state, which)))
    # a newer checkpoint that cannot be read is skipped for the older one; none readable: an error
    bad = os.path.join(wd, run_files.CHECKPOINTS, "7")
    os.makedirs(os.path.join(bad, run_files.STATE_ITEM))
    assert run_files.checkpoint_steps(wd) == [7, 0]
    assert run_files.load_params(wd)[1] == 0
    shutil.rmtree(os.path.join(wd, run_files.CHECKPOINTS, "0"))
    with pytest.raises(FileNotFoundError, match=r"none readable \(7: "):
        run_files.load_params(wd)
    with pytest.raises(ValueError, match=r"which='opt_state' is not one of"):
        run_files.load_params(wd, "opt_state")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        run_files.load_config(str(tmp_path / "missing"))
