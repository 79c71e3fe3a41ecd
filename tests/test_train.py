"""Training loop: loss decreases, resume is exact, 8 CPU devices match 1, grad accumulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from configs import synthetic_absorbing
from discrete_diffusion import training
from discrete_diffusion.methods import stratified

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(num_steps: int = 20, process: str = "masked"):
    config = synthetic_absorbing.get_config()
    config.process.name = process
    config.model.time_conditioning = process != "masked"
    if process == "uniform_absorbing":
        config.model.noise_input = True
        config.sampler.name = "reaudm"
    config.data.seq_len = 16
    config.data.synthetic_vocab_size = 8
    config.data.num_train_sequences = 2048
    config.data.num_eval_sequences = 64
    config.data.num_threads = 1
    config.data.prefetch = 2
    config.model.num_layers = 1
    config.model.d_model = 32
    config.model.num_heads = 2
    config.model.cond_dim = 16
    config.training.batch_size = 16
    config.training.num_steps = num_steps
    config.training.learning_rate = 3e-3
    config.training.warmup_steps = 0
    config.training.ema_decay = 0.9
    config.training.log_every = 5
    config.training.eval_every = 0
    config.training.eval_batches = 2
    config.training.sample_every = 0
    config.training.checkpoint_every = 0
    config.sampler.num_steps = 4
    return config


@pytest.mark.parametrize("process", ["masked", "uniform", "uniform_absorbing"])
def test_loss_decreases(process):
    config, data, trainer = training.setup(tiny_config(process=process))
    state = trainer.init_state(0)
    batches = [next(data.train_iter) for _ in range(4)]
    def nelbo(params, b):
        out = trainer._eval_step(params, trainer.shard_batch(b), jax.random.PRNGKey(1))
        return float(out["samples"]["nelbo"].sum())

    m0 = [nelbo(state.params, b) for b in batches]
    for _ in range(40):
        state, metrics = trainer.train_step(state, next(data.train_iter))
        assert np.isfinite(float(metrics["loss"]))
    m1 = [nelbo(state.params, b) for b in batches]
    assert sum(m1) < 0.95 * sum(m0)
    ev = trainer.evaluate(state.params, data.eval_batches(2))
    assert np.isfinite(ev["eval_nelbo"]) and abs(ev["eval_bpt"] * np.log(2) - ev["eval_nelbo"]) < 1e-6


def test_low_discrepancy_t():
    config = tiny_config()
    t = np.asarray(stratified.batch_times(jax.random.PRNGKey(0), 8, config.training.t_min))
    assert t.min() >= config.training.t_min and t.max() <= 1.0
    gaps = np.diff(np.sort(t))
    np.testing.assert_allclose(gaps, (1 - config.training.t_min) / 8, rtol=1e-4)


def test_resume_is_exact(tmp_path):
    s_full = training.train_and_evaluate(tiny_config(num_steps=6), str(tmp_path / "full"))
    s_half = training.train_and_evaluate(tiny_config(num_steps=6), str(tmp_path / "split"), stop_at=3)
    assert int(s_half.step) == 3
    s_split = training.train_and_evaluate(tiny_config(num_steps=6), str(tmp_path / "split"))
    assert int(s_split.step) == int(s_full.step) == 6
    for a, b in zip(jax.tree.leaves(s_full), jax.tree.leaves(s_split), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    lines = [json.loads(x) for x in lines]
    assert {"loss", "nelbo", "bpt", "ppl", "grad_norm", "lr", "tokens_per_s"} <= set(lines[-1])


def test_grad_accumulation_matches_full_batch():
    c1, c2 = tiny_config(), tiny_config()
    c2.training.grad_accum_steps = 4
    _, data1, e1 = training.setup(c1)
    _, _, e2 = training.setup(c2)
    s1, s2 = e1.init_state(0), e2.init_state(0)
    batch = next(data1.train_iter)
    s1, m1 = e1.train_step(s1, batch)
    s2, m2 = e2.train_step(s2, batch)
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


_DEVICE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import jax
    from test_train import tiny_config
    from discrete_diffusion import training
    config, data, trainer = training.setup(tiny_config())
    state = trainer.init_state(0)
    out = []
    for _ in range(3):
        state, m = trainer.train_step(state, next(data.train_iter))
        out.append(float(m["loss"]))
    print(json.dumps({{"n": len(jax.devices()), "mesh": int(trainer.mesh.devices.size), "losses": out}}))
    """
)


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a subprocess: this session's flags (tests/conftest.py: optimisation level,
    fusion emitters, so that it compiles as cheaply as this process) without any forced device
    count, plus `--xla_force_host_platform_device_count=devices` if devices > 0."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    return " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"] * (devices > 0))


def _run_devices(n: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=xla_flags(n), JAX_PLATFORMS="cpu")
    script = _DEVICE_SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one():
    _, data, trainer = training.setup(tiny_config(), devices=jax.devices()[:1])
    state = trainer.init_state(0)
    one = []
    for _ in range(3):
        state, m = trainer.train_step(state, next(data.train_iter))
        one.append(float(m["loss"]))
    eight = _run_devices(8)
    assert eight["n"] == 8 and eight["mesh"] == 8
    np.testing.assert_allclose(one, eight["losses"], rtol=1e-5)


def test_time_budget_stops_training_with_eval_and_checkpoint(tmp_path):
    config = tiny_config(num_steps=100_000)
    config.training.max_train_minutes = 0.05  # 3 s, compilation included
    config.training.eval_every = 100_000
    state = training.train_and_evaluate(config, str(tmp_path))
    assert 0 < int(state.step) < 100_000
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "eval" and r["step"] == int(state.step) for r in rows)
    assert os.path.isdir(tmp_path / "checkpoints" / str(int(state.step)))
    # the end-of-run summary says why it stopped, in words (main.py prints it)
    from discrete_diffusion.training import summary

    assert training.loop.last_stop_reason().startswith("config.training.max_train_minutes=0.05 reached")
    assert f"at step {int(state.step)}: config.training.max_train_minutes=0.05 reached" in summary.summary(
        str(tmp_path), "train", config, training.loop.last_stop_reason())
