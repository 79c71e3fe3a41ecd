"""Faults through the real entry point (`python -m discrete_diffusion.main`, in subprocesses):
unreadable checkpoints are set aside and an older one restored (or the run stops, exit 4),
non-finite training stops with exit 3 naming the step and the last good checkpoint, and SIGKILL
at random moments during asynchronous checkpoint saves never prevents an exact resume."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 30

# A tiny model and data (as tests/test_main.py SMALL), no eval or samples, a checkpoint every step
# (so that a random moment of the run is most likely inside an asynchronous save).
TINY = [
    "--config=configs/synthetic_absorbing.py",
    f"--config.training.num_steps={NUM_STEPS}",
    "--config.training.log_every=1",
    "--config.training.eval_every=0",
    "--config.training.sample_every=0",
    "--config.training.checkpoint_every=1",
    "--config.training.max_checkpoints=3",
    "--config.training.batch_size=8",
    "--config.training.warmup_steps=0",
    "--config.data.seq_len=16",
    "--config.data.num_train_sequences=512",
    "--config.data.num_eval_sequences=64",
    "--config.model.num_layers=1",
    "--config.model.d_model=32",
    "--config.model.num_heads=2",
    "--config.sampler.num_steps=4",
]


def _cmd(workdir, extra) -> list[str]:
    return [sys.executable, "-m", "discrete_diffusion.main", f"--workdir={workdir}", *TINY, *extra]


def _env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu")


def _main(workdir, *extra: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(workdir, extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _steps(workdir) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(x) for x in os.listdir(d) if x.isdigit())


def _final_state(workdir):
    """The state of the latest checkpoint of a run, as host numpy leaves (read in-process)."""
    from discrete_diffusion import training

    config = training.load_config(str(workdir))
    _, _, _, state = training.load_state(config, str(workdir))
    return int(state.step), [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of NUM_STEPS steps (checkpoints NUM_STEPS-2 .. NUM_STEPS)."""
    workdir = tmp_path_factory.mktemp("reference")
    res = _main(workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _steps(workdir) == [NUM_STEPS - 2, NUM_STEPS - 1, NUM_STEPS]
    return workdir


def _copy(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    return workdir


def test_unreadable_latest_checkpoints_are_set_aside_and_an_older_one_restored(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    ckpt = workdir / "checkpoints"
    latest, partial, good = NUM_STEPS, NUM_STEPS - 1, NUM_STEPS - 2
    for path in (ckpt / str(latest)).rglob("*"):  # every file of the latest cut in half
        if path.is_file():
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size // 2)
    shutil.rmtree(ckpt / str(partial) / "state")  # the one before: its 'state' item missing
    res = _main(workdir, f"--config.training.num_steps={NUM_STEPS + 2}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert f"checkpoint step {latest} cannot be read (truncated" in out, out[-3000:]
    assert f"checkpoint step {partial} cannot be read (missing-item" in out, out[-3000:]
    assert f"resumed from step {good}" in out
    # set aside (renamed with step and reason), never deleted
    aside = sorted(os.listdir(ckpt / "corrupt"))
    assert aside == [f"{partial}-missing-item", f"{latest}-truncated"]
    assert (ckpt / "corrupt" / f"{partial}-missing-item" / "data").is_dir()
    assert _steps(workdir)[-1] == NUM_STEPS + 2
    train = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert train[-1]["step"] == NUM_STEPS + 2


def _files(workdir) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), workdir)] = f.read()
    return out


def test_no_readable_checkpoint_stops_unless_start_fresh(reference, tmp_path):
    workdir = _copy(reference, tmp_path)
    # another model's config is refused in one line before anything is moved or written: a
    # mismatch is not corruption (exit 5)
    before = _files(workdir)
    res = _main(workdir, "--config.model.d_model=64")
    assert res.returncode == 5, (res.stdout + res.stderr)[-3000:]
    assert "model.d_model 32 -> 64" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _files(workdir) == before
    for step in (NUM_STEPS - 2, NUM_STEPS - 1, NUM_STEPS):  # damage every checkpoint
        os.remove(workdir / "checkpoints" / str(step) / "meta" / "metadata")
    res = _main(workdir)
    assert res.returncode == 4, (res.stdout + res.stderr)[-3000:]
    assert "no readable checkpoint" in res.stderr and "start_fresh_if_unreadable" in res.stderr
    for step in (NUM_STEPS - 2, NUM_STEPS - 1, NUM_STEPS):
        assert f"checkpoint step {step} cannot be read (" in res.stdout
    assert _steps(workdir) == []
    assert len(os.listdir(workdir / "checkpoints" / "corrupt")) == 3
    # (a second start without the flag stops too: tests/test_training_checkpoints.py)
    res = _main(workdir, "--config.training.num_steps=2",
                "--config.training.start_fresh_if_unreadable=True")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "starting from step 0" in res.stdout and _steps(workdir) == [1, 2]
    assert len(os.listdir(workdir / "checkpoints" / "corrupt")) == 3


def test_nonfinite_training_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    """lr = 1e12: the loss overflows within a few steps. The run stops (exit 3) after
    max_nonfinite_steps = 3 (the default) non-finite steps in a row, naming the step and the last
    good checkpoint, which rotation (max_checkpoints = 2) did not replace by a non-finite one."""
    res = _main(tmp_path, "--config.training.learning_rate=1e12",
                "--config.training.max_checkpoints=2")
    out = res.stdout + res.stderr
    assert res.returncode == 3, out[-3000:]
    assert "non-finite" in out and "the parameters were not updated (1 consecutive" in out
    assert "training stopped at step" in res.stderr and "last good checkpoint" in res.stderr
    nonfinite = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
                 if json.loads(x)["kind"] == "nonfinite"]
    assert [x["nonfinite_consecutive"] for x in nonfinite] == [1, 2, 3]
    stopped = nonfinite[-1]["step"]
    assert f"training stopped at step {stopped}" in res.stderr
    steps = _steps(tmp_path)
    assert steps and steps[-1] < nonfinite[0]["step"]  # no checkpoint of a non-finite step
    last_good = os.path.join(str(tmp_path), "checkpoints", str(steps[-1]))
    assert f"last good checkpoint: {last_good} (step {steps[-1]})" in res.stderr
    step, leaves = _final_state(tmp_path)  # the last good checkpoint restores, all finite
    assert step == steps[-1]
    assert all(np.all(np.isfinite(x)) for x in leaves if np.issubdtype(x.dtype, np.inexact))


def _saving_step(workdir) -> int | None:
    """The step orbax is writing (its `<step>.orbax-checkpoint-tmp` directory), else None."""
    ckpt = os.path.join(workdir, "checkpoints")
    tmp = [x for x in os.listdir(ckpt) if x.endswith("tmp")] if os.path.isdir(ckpt) else []
    return int(tmp[0].split(".")[0]) if tmp else None


def test_sigkill_during_async_saves_never_prevents_an_exact_resume(reference, tmp_path):
    """Twice: start (resuming), wait until this run is saving a checkpoint asynchronously
    (one every step) a random 2 to 6 steps after it resumed, SIGKILL at a random moment of the
    next 0.2 s (inside the save, at its rename, the deletion of the oldest checkpoint or the next
    save); every start resumes from what the kill left, and the finished run's state equals the
    uninterrupted run's."""
    workdir = tmp_path / "killed"
    rng = random.Random(12)
    kills, logs = [], []
    for i in range(2):
        start = max(_steps(workdir), default=0) if os.path.isdir(workdir / "checkpoints") else 0
        logs.append(tmp_path / f"stdout_{i}.txt")
        with open(logs[-1], "w") as out:
            proc = subprocess.Popen(_cmd(workdir, []), cwd=ROOT, env=_env(), stdout=out,
                                    stderr=subprocess.STDOUT)
            deadline, target = time.monotonic() + 180, start + rng.randint(2, 6)
            while proc.poll() is None and time.monotonic() < deadline:
                if (_saving_step(workdir) or 0) >= target:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is not None:  # finished (or failed) before the kill
                assert proc.returncode == 0, logs[-1].read_text()[-3000:]
                break
            saving = _saving_step(workdir)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        kills.append((start, saving, sorted(os.listdir(workdir / "checkpoints"))))
    print(f"kills (resumed from, step being saved at the kill, what was left): {kills}")
    assert kills, "no kill landed before the run finished"
    res = _main(workdir)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    for i, log in enumerate([*logs[1:], None]):  # every start resumed where the last kill left
        text = res.stdout if log is None else log.read_text()
        left = _resumable(kills, i)
        assert left == 0 or f"resumed from step {left}" in text, text[-3000:]
        assert "cannot be read" not in text, text[-3000:]
    step, leaves = _final_state(workdir)
    ref_step, ref_leaves = _final_state(reference)
    assert step == ref_step == NUM_STEPS
    assert len(leaves) == len(ref_leaves)
    for a, b in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def _resumable(kills, i) -> int:
    """The newest finished checkpoint the i-th kill left (orbax's temporary ones excluded)."""
    return max((int(x) for x in kills[i][2] if x.isdigit()), default=0)
