"""The training loop's faults, in-process on a tiny model (no subprocess launches): config drift
on resume, stop signals, metrics.jsonl after a resume, the workdir lock, unusable workdirs, a full
disk, a data error, 'nothing to train', and --mode=sample with a config that does not fit."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import threading
import time

import pytest
from test_train import tiny_config

from discrete_diffusion import training
from discrete_diffusion.training import config_drift, faults, loop, workdir, workdir_lock

STEPS = 4


def _config(**training_fields):
    config = tiny_config(num_steps=STEPS)
    config.training.checkpoint_every = 2
    config.training.max_checkpoints = 5
    config.training.log_every = 1
    for k, v in training_fields.items():
        config.training[k] = v
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir trained for STEPS steps (checkpoints 2 and 4)."""
    wd = tmp_path_factory.mktemp("trained")
    training.train_and_evaluate(_config(), str(wd))
    return wd


def _copy(trained, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(trained, wd)
    return wd


def _snapshot(wd) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(wd):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, wd)] = fh.read()
    return out


def _data_position(wd, step: int) -> int:
    """Examples of the stream consumed before the next batch, from checkpoint `step`'s data item."""
    d = os.path.join(wd, "checkpoints", str(step), "data")
    with open(os.path.join(d, "metadata")) as fh:  # orbax's JsonSave file
        state = json.load(fh)
    return int(state.get("example", 0)) + int(state["next_index"]) * int(
        state.get("global_batch_size", 0))


@pytest.mark.parametrize("change, fields", [
    ({"model.d_model": 64}, ["model.d_model"]),
    ({"model.parameterization": "loo", "process.schedule": "cosine"},
     ["model.parameterization", "process.schedule"]),
])
def test_config_drift_is_refused_and_nothing_moved(trained, tmp_path, change, fields):
    wd = _copy(trained, tmp_path)
    before = _snapshot(wd)
    config = _config()
    for dotted, value in change.items():
        section, name = dotted.split(".")
        config[section][name] = value
    with pytest.raises(config_drift.ConfigDriftError) as err:
        training.train_and_evaluate(config, str(wd))
    assert all(f in str(err.value) for f in fields) and "--workdir" in str(err.value)
    assert _snapshot(wd) == before  # no checkpoint set aside, config.json not rewritten
    # --mode=sample (load_state) names the same mismatch
    with pytest.raises(config_drift.ConfigDriftError, match=fields[0].replace(".", r"\.")):
        training.load_state(config, str(wd))
    # the workdir still resumes with its own config
    assert int(training.train_and_evaluate(_config(num_steps=STEPS + 1), str(wd)).step) == STEPS + 1


def test_accepted_changes_batch_size_position_and_nothing_to_train(trained, tmp_path, capsys):
    wd = _copy(trained, tmp_path)
    assert _data_position(wd, STEPS) == STEPS * 16
    state = training.train_and_evaluate(_config(num_steps=STEPS + 2, batch_size=8), str(wd))
    assert int(state.step) == STEPS + 2
    # 2 more batches of 8 after STEPS batches of 16: no example skipped or repeated
    assert _data_position(wd, STEPS + 2) == STEPS * 16 + 2 * 8
    out = capsys.readouterr().out
    assert "(accepted): training.batch_size 16 -> 8, training.num_steps 4 -> 6" in out
    history = (wd / "config_history.jsonl").read_text().splitlines()
    assert [json.loads(h)["resumed_from_step"] for h in history] == [None, STEPS]
    training.train_and_evaluate(_config(num_steps=STEPS), str(wd))
    assert "nothing to train: the checkpoint is at step 6, config.training.num_steps=4" in (
        capsys.readouterr().out)


def _signal_when_training(wd, sig, after_step: int) -> threading.Thread:
    def send():
        deadline = time.time() + 120
        while time.time() < deadline:
            path = wd / "metrics.jsonl"
            steps = [json.loads(x)["step"] for x in path.read_text().splitlines()] if (
                path.exists()) else []
            if any(after_step <= s < 900 for s in steps):  # 900: the stale line below
                os.kill(os.getpid(), sig)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("sig", ["SIGINT", "SIGHUP"])
def test_sigint_and_sighup_save_and_metrics_follow_the_checkpoint(trained, tmp_path, capsys, sig):
    wd = _copy(trained, tmp_path)
    with open(wd / "metrics.jsonl", "a") as f:  # steps a killed run logged but never saved
        f.write(json.dumps({"step": 900, "kind": "train", "loss": 1.0}) + "\n")

    def fail(*_):
        raise AssertionError(f"{sig} reached the test: the loop did not handle it")

    old = signal.signal(getattr(signal, sig), fail)
    try:
        thread = _signal_when_training(wd, getattr(signal, sig), STEPS + 2)
        state = training.train_and_evaluate(
            _config(num_steps=100_000, checkpoint_every=0), str(wd))
        thread.join()
    finally:
        signal.signal(getattr(signal, sig), old)
    step = int(state.step)
    assert STEPS + 2 <= step < 100_000
    assert f"{sig}: saved step {step}, exiting" in capsys.readouterr().out
    assert str(step) in os.listdir(wd / "checkpoints")
    steps = [json.loads(x)["step"] for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == step and 900 not in steps
    assert "900" in (wd / workdir.REWOUND_FILE).read_text()


def test_second_sigint_exits_at_once(monkeypatch):
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    loop._STOP["signal"] = None
    loop._on_stop_signal(signal.SIGINT, None)
    assert loop._STOP["signal"] == "SIGINT" and exits == []
    loop._on_stop_signal(signal.SIGINT, None)
    assert exits == [130]
    loop._STOP["signal"] = None


def test_a_second_trainer_is_refused_naming_the_first(trained, tmp_path):
    wd = _copy(trained, tmp_path)
    first = workdir_lock.acquire(str(wd))  # a live run (this process) holds the workdir
    before = _snapshot(wd)
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {os.getpid()}"):
        training.train_and_evaluate(_config(num_steps=STEPS + 1), str(wd))
    assert _snapshot(wd) == before
    first.release()
    training.train_and_evaluate(_config(num_steps=STEPS + 1), str(wd))
    assert not (wd / workdir_lock.LOCK_FILE).exists()  # released at the end


def test_unusable_workdirs_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(workdir.WorkdirError, match="is a file, not a directory"):
        training.train_and_evaluate(_config(), str(tmp_path / "file"))
    with pytest.raises(workdir.WorkdirError, match="is a file"):
        training.train_and_evaluate(_config(), str(tmp_path / "file" / "sub"))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(workdir.tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(workdir.WorkdirError, match="cannot be written .Read-only file system"):
        training.train_and_evaluate(_config(), str(tmp_path / "ro"))


def test_full_disk_is_one_line_naming_step_and_free_space(trained, tmp_path, monkeypatch):
    wd = _copy(trained, tmp_path)
    real = loop.save_checkpoint

    def save(mngr, state, data_iter, **kw):
        if int(state.step) > STEPS + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(mngr, state, data_iter, **kw)

    monkeypatch.setattr(loop, "save_checkpoint", save)
    with pytest.raises(faults.CheckpointWriteError) as err:
        training.train_and_evaluate(_config(num_steps=STEPS + 4, checkpoint_every=1), str(wd))
    msg = str(err.value)
    assert "\n" not in msg and "no space left on device" in msg and "MB free" in msg
    assert str(wd) in msg and f"step {STEPS + 1}" in msg  # the newest complete one, kept
    assert f"step {STEPS + 2}" in msg


def test_data_error_saves_first_and_names_the_data(trained, tmp_path, monkeypatch):
    wd = _copy(trained, tmp_path)
    real = loop.setup

    class Broken:
        def __init__(self, it):
            self.it, self.n = it, 0

        def __next__(self):
            self.n += 1
            if self.n > 3:
                raise IndexError("Record key should be in [0, num_records)")
            return next(self.it)

        def get_state(self):
            return self.it.get_state()

        def set_state(self, s):
            self.it.set_state(s)

    def setup(config, devices=None):
        config, data, trainer = real(config, devices)
        return config, dataclasses.replace(data, train_iter=Broken(data.train_iter)), trainer

    monkeypatch.setattr(loop, "setup", setup)
    with pytest.raises(faults.DataReadError) as err:
        training.train_and_evaluate(_config(num_steps=STEPS + 10, checkpoint_every=0), str(wd))
    msg = str(err.value)
    assert "synthetic" in msg and "Record key" in msg and f"saved step {STEPS + 3}" in msg
    assert str(STEPS + 3) in os.listdir(wd / "checkpoints")


def test_nonfinite_samples_do_not_stop_training(trained, tmp_path, monkeypatch, capsys):
    from discrete_diffusion.sampling import finite_guard

    wd = _copy(trained, tmp_path)

    def broken(*args, **kwargs):
        raise finite_guard.NonFiniteSamplingError("sampling: the network output is NaN at t=1.0")

    monkeypatch.setattr(loop, "sample_and_write", broken)
    state = training.train_and_evaluate(_config(num_steps=STEPS + 1, sample_every=1), str(wd))
    assert int(state.step) == STEPS + 1 and str(STEPS + 1) in os.listdir(wd / "checkpoints")
    assert f"[samples] step {STEPS + 1}: none written: sampling: the network output is NaN" in (
        capsys.readouterr().out)
