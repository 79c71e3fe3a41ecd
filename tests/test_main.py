"""Command line: a 3-step training run writes metrics, samples and a checkpoint; bad configs fail
with errors naming the field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import base, shakespeare_absorbing, synthetic_absorbing
from discrete_diffusion import config_validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".py") and not f.startswith("_"))


def _main(args, tmp_path, timeout=120):
    cmd = [sys.executable, "-m", "discrete_diffusion.main", f"--workdir={tmp_path}", *args]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


SMALL = [
    "--config=configs/synthetic_absorbing.py",
    "--config.training.num_steps=3",
    "--config.training.log_every=1",
    "--config.training.eval_every=3",
    "--config.training.eval_batches=1",
    "--config.training.sample_every=3",
    "--config.training.num_samples=2",
    "--config.training.checkpoint_every=3",
    "--config.training.batch_size=8",
    "--config.data.seq_len=16",
    "--config.data.num_train_sequences=512",
    "--config.data.num_eval_sequences=64",
    "--config.model.num_layers=1",
    "--config.model.d_model=32",
    "--config.model.num_heads=2",
    "--config.sampler.num_steps=4",
]


def test_train_eval_sample_from_command_line(tmp_path):
    res = _main(SMALL, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "train"] == [1, 2, 3]
    assert any(x["kind"] == "eval" and "eval_bpt" in x for x in lines)
    assert (tmp_path / "samples" / "step_3.txt").exists()
    assert (tmp_path / "checkpoints" / "3").is_dir()
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
    assert "done: --mode=train of" in res.stdout and "config.training.num_steps=3 reached" in res.stdout
    assert f"wrote: {tmp_path}/checkpoints (steps [3])" in res.stdout
    training_samples = (tmp_path / "samples" / "step_3.txt").read_text()
    # --mode=sample: a file named by step, sampler and seed (config.sampler.seed; default the
    # training seed), never overwriting the training's samples; the summary names it
    res = _main([*SMALL, "--mode=sample", "--config.sampler.seed=7"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    written = tmp_path / "samples" / "step_3_ancestral_seed7.txt"
    assert written.read_text() != training_samples
    assert (tmp_path / "samples" / "step_3.txt").read_text() == training_samples
    assert str(written) in res.stdout.splitlines()[-1]


def test_eval_mode_writes_likelihood_samples_and_frontier(tmp_path):
    res = _main([*SMALL, "--config.training.sample_every=0"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "config.json").read_text())["data"]["name"] == "synthetic"
    sweep = ["--config.eval.num_samples=8", "--config.eval.steps=(2,4)",
             "--config.eval.temperatures=(0.5,1.0)", "--config.eval.top_ps=(1.0,)",
             "--config.eval.samplers=ancestral,first_hitting", "--config.eval.frontier=True"]
    res = _main([*SMALL, "--mode=eval", *sweep], tmp_path, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["judge"] == "exact" and summary["step"] == 3 and summary["nfe"] >= 1
    for key in ("eval_bpt", "eval_se_bpt", "true_ppl", "unigram_entropy", "distinct_2"):
        assert np.isfinite(summary[key]), key
    # after 3 steps some samples are impossible under the true chain: infinite perplexity
    assert summary["gen_ppl"] > summary["true_ppl"] and 0 <= summary["frac_impossible"] <= 1
    rows = json.loads((tmp_path / "eval" / "frontier.json").read_text())
    # the held-out data, then per sampler: steps 2, 4; temperatures 0.5, 1 and top_p 1 at
    # config.sampler.num_steps = 4
    assert len(rows) == 1 + 2 * 5 and rows[0]["sampler"] == "data" and rows[0]["nfe"] == 0
    # exact samples of the chain: the true generator's perplexity on them is finite
    assert rows[0]["frac_impossible"] == 0 and rows[0]["gen_ppl"] < 2 * rows[0]["true_ppl"]
    rows = rows[1:]
    fhs = [r for r in rows if r["sampler"] == "first_hitting"]
    assert {r["nfe"] for r in fhs if r["sweep"] == "steps"} == {2, 4}  # ceil(16 / steps) per call
    assert all(r["nfe"] == 16 for r in fhs if r["sweep"] == "temperature")  # one token per call
    assert all(r["gen_ppl"] > 1 and r["unigram_entropy"] > 0 for r in rows)
    for name in ("frontier.csv", "frontier_unigram_entropy.png", "frontier_nfe.png", "samples.txt"):
        assert (tmp_path / "eval" / name).stat().st_size > 0, name
    # the saved config is a valid config of the same run (the sweep script's default)
    from discrete_diffusion import training

    saved = training.load_config(str(tmp_path))
    config_validation.validate(saved)
    assert saved.process.num_classes == saved.data.synthetic_vocab_size
    assert list(saved.eval.steps) == [16, 32, 64, 128]
    # the standalone sweep script
    res = subprocess.run([sys.executable, "-m", "discrete_diffusion.evaluation.frontier",
                          f"--workdir={tmp_path}", f"--config={ROOT}/configs/synthetic_absorbing.py",
                          *[a for a in SMALL if not a.startswith("--config=")], *sweep,
                          "--config.eval.samplers=ancestral"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(json.loads((tmp_path / "eval" / "frontier.json").read_text())) == 1 + 5


def test_sigterm_saves_a_checkpoint_and_training_resumes(tmp_path):
    """SIGTERM mid-run (as a preempted job gets): the step in flight ends, a checkpoint of it is
    saved, the process exits 0; the next run resumes from that step."""
    args = [*SMALL, "--config.training.num_steps=100000", "--config.training.checkpoint_every=0",
            "--config.training.eval_every=0", "--config.training.sample_every=0"]
    cmd = [sys.executable, "-m", "discrete_diffusion.main", f"--workdir={tmp_path}", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until training steps are running
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    saved = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
    assert len(saved) == 1 and saved[0] >= 3
    assert f"SIGTERM: saved step {saved[0]}" in out
    res = _main([*SMALL, f"--config.training.num_steps={saved[0] + 2}"], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from step {saved[0]}" in res.stdout
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps[-1] == saved[0] + 2


@pytest.mark.parametrize(
    "override, field",
    [
        ("--config.process.name=gaussian", "config.process.name"),
        ("--config.training.learning_rate=-1.0", "config.training.learning_rate"),
    ],
)
def test_bad_values_from_command_line(tmp_path, override, field):
    res = _main(["--config=configs/synthetic_absorbing.py", override], tmp_path, timeout=60)
    assert res.returncode != 0
    assert "ValueError" in res.stderr and field in res.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_is_valid(name):
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    config_validation.validate(module.get_config())


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("process.name", "gaussian", "config.process.name='gaussian' is not one of ['masked'"),
        ("process.schedule", "trainer", "config.process.schedule='trainer' is not one of"),
        ("model.parameterization", "eps", "config.model.parameterization='eps' is not one of"),
        ("sampler.name", "ddim", "config.sampler.name='ddim' is not one of"),
        ("training.loss", "mse", "config.training.loss='mse' is not one of ['elbo'"),
        ("model.name", "rnn", "config.model.name='rnn' is not one of ['dit', 'ar']"),
        ("model.dropout", 1.5, "config.model.dropout=1.5 must lie in [0.0, 1.0)"),
        ("training.batch_size", 0, "config.training.batch_size=0 must lie in [1, inf]"),
        ("training.ema_decay", 1.0, "config.training.ema_decay"),
        ("training.lr_schedule", "step", "['constant', 'cosine']"),
        ("sampler.num_steps", 0, "config.sampler.num_steps"),
        ("data.name", "imagenet", "config.data.name='imagenet'"),
    ],
)
def test_validation_messages(path, value, message):
    config = synthetic_absorbing.get_config()
    section, field = path.split(".")
    with config.unlocked():
        config[section][field] = value
    with pytest.raises(ValueError) as err:
        config_validation.validate(config)
    assert message in str(err.value)


def test_grad_accum_must_divide_batch():
    config = base.get_config()
    config.training.grad_accum_steps = 3
    with pytest.raises(ValueError, match="grad_accum_steps"):
        config_validation.validate(config)


def test_shakespeare_config_fits_cpu_budget():
    config = shakespeare_absorbing.get_config()
    assert config.model.time_conditioning is False
    # The README's main command must finish within 10 minutes on a 2-core CPU: training stops at
    # the time budget (then evaluates and samples), whatever the machine's speed.
    assert 0 < config.training.max_train_minutes <= 9
