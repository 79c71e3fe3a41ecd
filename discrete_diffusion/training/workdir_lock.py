"""One training run per workdir: workdir/lock holds the host and pid of the run that owns it.

    lock = workdir_lock.acquire(workdir)     # WorkdirLockedError naming the owner, or a lock
    lock.heartbeat()                         # now and then while training (cheap; rate-limited)
    lock.release()

Two trainers on one workdir would rotate each other's checkpoints away, resume from each
other's state and interleave metrics.jsonl; the second one is refused instead. The lock file is
created atomically (O_CREAT | O_EXCL) and holds {'host', 'pid', 'token', 'started'}. It is *stale*
(its run is gone) when its host is this host and no process has its pid, or, for a lock of
another host, when its heartbeat (the file's modification time) is older than `stale_after`
seconds; a stale lock is taken over with a warning. With several processes only process 0
acquires it (the caller decides: `acquire` is called on process 0 only).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import time
import uuid
from typing import Any

from discrete_diffusion.training.faults import TrainingStoppedError

LOCK_FILE = "lock"
STALE_AFTER_S = 600.0  # a lock of another host not touched for this long is stale
HEARTBEAT_EVERY_S = 30.0


class WorkdirLockedError(TrainingStoppedError):
    """Another live run holds the workdir's lock."""

    exit_code = 6


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def stale_reason(owner: dict[str, Any], age_s: float, stale_after: float = STALE_AFTER_S) -> str | None:
    """Why a lock held by `owner` (last touched `age_s` seconds ago) is stale, or None if live."""
    host, pid = owner.get("host"), owner.get("pid")
    if not isinstance(pid, int) or not host:
        return "the lock file is unreadable or incomplete" if age_s > 5.0 else None
    if host == socket.gethostname():
        return None if _pid_alive(pid) else f"no process {pid} runs on {host}"
    if age_s > stale_after:
        return f"its heartbeat is {age_s:.0f} s old (> {stale_after:.0f} s)"
    return None


class WorkdirLock:
    """The lock of one workdir held by this process (see the module doc)."""

    def __init__(self, path: str, token: str):
        self.path, self.token = path, token
        self._last_beat = time.time()

    def heartbeat(self, force: bool = False) -> None:
        """Touches the lock file (at most every HEARTBEAT_EVERY_S seconds unless `force`)."""
        now = time.time()
        if force or now - self._last_beat >= HEARTBEAT_EVERY_S:
            self._last_beat = now
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Removes the lock file if it is still this run's."""
        if _read(self.path).get("token") == self.token:
            with contextlib.suppress(OSError):
                os.remove(self.path)


def _create(path: str, token: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": token,
                   "started": now}, f)
    return True


def acquire(workdir: str, stale_after: float = STALE_AFTER_S, log=print) -> WorkdirLock:
    """Takes workdir/lock, or takes over a stale one (with a warning through `log`); raises
    `WorkdirLockedError` naming the host and pid of a live owner."""
    path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    token = uuid.uuid4().hex
    for _ in range(3):
        if _create(path, token):
            return WorkdirLock(path, token)
        owner = _read(path)
        try:
            age = time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            continue  # released meanwhile: try again
        why = stale_reason(owner, age, stale_after)
        if why is None:
            raise WorkdirLockedError(
                f"{os.path.abspath(workdir)} is in use by another run (host {owner.get('host')}, "
                f"pid {owner.get('pid')}, started {owner.get('started')}; lock file {path}). Stop "
                "that run or use another --workdir; if that run is dead, delete the lock file."
            )
        log(f"warning: taking over the stale lock of {os.path.abspath(workdir)} (host "
            f"{owner.get('host')}, pid {owner.get('pid')}, started {owner.get('started')}): {why}")
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    raise WorkdirLockedError(f"could not take the lock {path}: another run keeps taking it")


__all__ = ["LOCK_FILE", "STALE_AFTER_S", "WorkdirLock", "WorkdirLockedError", "acquire",
           "stale_reason"]
