"""workdir_lock: a second run on a workdir is refused naming the first; stale locks are taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from discrete_diffusion.training import workdir_lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_is_refused_naming_host_and_pid(tmp_path):
    lock = workdir_lock.acquire(str(tmp_path))
    owner = json.loads((tmp_path / "lock").read_text())
    assert owner["host"] == socket.gethostname() and owner["pid"] == os.getpid()
    with pytest.raises(workdir_lock.WorkdirLockedError) as err:
        workdir_lock.acquire(str(tmp_path))
    assert f"pid {os.getpid()}" in str(err.value) and socket.gethostname() in str(err.value)
    lock.release()
    assert not (tmp_path / "lock").exists()
    workdir_lock.acquire(str(tmp_path)).release()


def test_stale_locks_are_taken_over_with_a_warning(tmp_path):
    path = tmp_path / "lock"
    warnings = []
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "token": "x"}))
    lock = workdir_lock.acquire(str(tmp_path), log=warnings.append)
    assert len(warnings) == 1 and "stale" in warnings[0] and "no process" in warnings[0]
    lock.release()
    # another host: stale only once its heartbeat is old
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y"}))
    with pytest.raises(workdir_lock.WorkdirLockedError, match="host elsewhere"):
        workdir_lock.acquire(str(tmp_path), log=warnings.append)
    old = time.time() - 2 * workdir_lock.STALE_AFTER_S
    os.utime(path, (old, old))
    workdir_lock.acquire(str(tmp_path), log=warnings.append).release()
    assert "heartbeat" in warnings[-1]


def test_release_leaves_another_runs_lock(tmp_path):
    lock = workdir_lock.acquire(str(tmp_path))
    (tmp_path / "lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "other"}))
    lock.release()
    assert (tmp_path / "lock").exists()
