"""Every config in configs/ runs `--mode=train` (2 steps), `--mode=eval` and `--mode=sample`
where its data is available offline; the others stop with an error that says how to prepare it.

The three modes are called as `discrete_diffusion.main` calls them after parsing its flags
(validate, then `training.train_and_evaluate`, `evaluation.report.evaluate_workdir`,
`training.sample_checkpoint`), in-process, on the config shrunk to a one-layer d=32 network with
tiny batches; the config's own process, method, parameterization, objective and sampler are kept.
The frontier sweep and the text judge (SmolLM2) are off here: test_main and
test_evaluation_judge run them.

Special case: a config distilling a trained model (config.method.name='duo_distill', e.g.
shakespeare_duo_distill) needs a teacher run; it gets the untrained initial checkpoint of the
config it derives from (`DISTILL_TEACHERS`), shrunk the same way (`testing.runs.initial_checkpoint`),
and round_steps = 1, so that its two steps each end a round: the run then checks the teacher
refresh (teacher = student after step 2), the doubling delta and the checkpoint round trip (this
is the end-to-end test of methods/duo_distill.py).
"""

from __future__ import annotations

import importlib
import json
import os

import jax
import numpy as np
import pytest

from discrete_diffusion import config_validation, training
from discrete_diffusion.evaluation import report
from discrete_diffusion.testing import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".py") and f not in ("base.py", "__init__.py"))
NEEDS_PREPARED_DATA = {"lm1b", "openwebtext"}
DISTILL_TEACHERS = {"shakespeare_duo_distill": "shakespeare_duo"}  # distillation config: teacher's


def _config(name: str):
    config = importlib.import_module(f"configs.{name}").get_config()
    c = config
    c.model.size = "tiny"
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.cond_dim = 1, 32, 2, 16
    if c.data.name not in ("digits", "mnist", "checkerboard"):  # fixed lengths
        c.data.seq_len = 16
    c.data.num_threads, c.data.prefetch = 1, 2
    c.data.num_train_sequences, c.data.num_eval_sequences = 256, 16
    c.data.eval_batch_size = 8
    c.training.batch_size = 8
    c.training.grad_accum_steps = 1
    c.training.num_steps = 2
    c.training.max_train_minutes = 0.0
    c.training.log_every = 1
    c.training.eval_every = 2
    c.training.eval_batches = 1
    c.training.eval_num_t = 2
    c.training.sample_every = 2
    c.training.num_samples = 2
    c.training.checkpoint_every = 2
    c.sampler.num_steps = 2
    c.eval.num_samples = 2
    c.eval.frontier = False
    if c.data.name != "synthetic":
        c.eval.judge = "none"
    if c.method.get("encoder_layers", None):  # vadd's recognition model
        c.method.encoder_layers = 1
    if c.eval.get("iwae_samples", 0) > 2:  # vadd: the importance-weighted bounds stay exercised
        c.eval.iwae_samples = 2
    return config


@pytest.mark.parametrize("name", CONFIGS)
def test_config_trains_evaluates_and_samples(name, tmp_path):
    config = _config(name)
    distill = config.method.get("name", None) == "duo_distill"
    if distill:
        teacher = _config(DISTILL_TEACHERS[name])
        config.method.teacher_workdir = runs.initial_checkpoint(teacher, str(tmp_path / "teacher"))
        config.method.round_steps = 1
        tmp_path = tmp_path / "student"
    config_validation.validate(config)
    workdir = str(tmp_path)
    if config.data.name in NEEDS_PREPARED_DATA:
        with pytest.raises(FileNotFoundError, match=r"(?s)is not prepared.*launch/prepare_"):
            training.train_and_evaluate(config, workdir)
        return
    state = training.train_and_evaluate(config, workdir)
    assert int(state.step) == 2
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in rows if r["kind"] == "train")
    summary = report.evaluate_workdir(config, workdir)  # --mode=eval
    assert summary["step"] == 2 and np.isfinite(summary["eval_bpt"])
    if config.method.name == "vadd":  # every held-out bound, named, in the eval log and summary.json
        names = ["marginal_nelbo", "trajectory_nelbo", "delbo"]
        names += ["iw_delbo"] if config.eval.iwae_samples > 1 else []
        logged = [r for r in rows if r["kind"] == "eval"][-1]
        for n in names:
            for k in (f"eval_{n}_bpt", f"eval_{n}_se_bpt"):
                assert np.isfinite(summary[k]) and np.isfinite(logged[k]), k
        assert summary["eval_marginal_nelbo_bpt"] == summary["eval_bpt"]  # eval_nelbo: per_step's
    assert (tmp_path / "eval" / "samples.txt").stat().st_size > 0
    texts = training.sample_checkpoint(config, workdir)  # --mode=sample
    assert len(texts) == config.training.num_samples
    assert (tmp_path / "samples" / "step_2.txt").exists()
    if distill:
        np.testing.assert_allclose(
            [r["delta"] for r in rows if r["kind"] == "train"],
            [config.method.delta_init, 2 * config.method.delta_init])
        jax.tree.map(lambda t, s: np.testing.assert_allclose(t, s, rtol=1e-6, atol=1e-7),
                     state.params["teacher"], state.params["network"])
        restored = training.load_state(config, workdir)[3]
        jax.tree.map(np.testing.assert_array_equal, (restored.params, restored.opt_state),
                     (state.params, state.opt_state))
