"""The workdir a run writes to: checked up front, its metrics kept in step with its checkpoints.

    workdir.prepare(path)                      # WorkdirError: a file, or not writable (one line)
    workdir.rewind_metrics(path, step)         # metrics.jsonl lines after `step` set aside
    workdir.free_space(path)                   # '12.3 MB free' (for messages about a full disk)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from discrete_diffusion.training.faults import TrainingStoppedError

METRICS_FILE = "metrics.jsonl"
REWOUND_FILE = "metrics.rewound.jsonl"


class WorkdirError(TrainingStoppedError):
    """The workdir cannot be used: it is a file, or it cannot be written."""

    exit_code = 1


def prepare(workdir: str) -> str:
    """Creates `workdir` if needed and checks that files can be written in it; returns its
    absolute path. WorkdirError (one line) when a file is in the way or it is read-only."""
    path = os.path.abspath(workdir)
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if os.path.exists(probe) and not os.path.isdir(probe):
        raise WorkdirError(f"--workdir={workdir}: {probe} is a file, not a directory; pass "
                           "the path of a directory (it is created if missing)")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise WorkdirError(f"--workdir={workdir} cannot be written ({err.strerror or err}); pass "
                           "a writable directory") from None
    return path


def free_space(path: str) -> str:
    """The free space of the file system holding `path`, e.g. '12.3 MB free'."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return f"{shutil.disk_usage(path).free / 1e6:.1f} MB free"
    except OSError:
        return "free space unknown"


def rewind_metrics(workdir: str, step: int) -> int:
    """Keeps workdir/metrics.jsonl consistent with a run resumed from checkpoint `step`: the
    lines of later steps (written before an interruption that lost them) move to
    workdir/metrics.rewound.jsonl. Returns how many moved."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = f.read().splitlines()
    keep, drop = [], []
    for line in lines:
        try:
            later = int(json.loads(line)["step"]) > step
        except (ValueError, KeyError, TypeError):
            later = False  # an unparsable line (a torn write) is kept as it is
        (drop if later else keep).append(line)
    if drop:
        with open(os.path.join(workdir, REWOUND_FILE), "a") as f:
            f.write("\n".join(drop) + "\n")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(x + "\n" for x in keep))
        os.replace(tmp, path)
    return len(drop)


__all__ = ["METRICS_FILE", "REWOUND_FILE", "WorkdirError", "free_space", "prepare",
           "rewind_metrics"]
