"""The few lines a run ends with: why it stopped, its final metrics and the paths it wrote.

    done: --mode=train of runs/x stopped at step 8000: config.training.num_steps=8000 reached
    final: train loss 1.234 (step 8000); held-out eval_bpt 2.071 (step 8000)
    wrote: runs/x/checkpoints (steps [7500, 8000]), runs/x/metrics.jsonl, runs/x/samples (3 files,
           newest step_8000.txt), runs/x/tensorboard

Read from the workdir after the run (metrics.jsonl, checkpoints/, samples/, tensorboard/, eval/), so
it describes what is on disk whatever path the run took.
"""

from __future__ import annotations

import json
import os
from typing import Any

_METRICS = ("loss", "nelbo", "bpt", "eval_bpt", "eval_bpc", "eval_nelbo", "gen_ppl")


def _last_metrics(workdir: str) -> dict[str, dict[str, Any]]:
    """The last line of each kind ('train', 'eval') of workdir/metrics.jsonl."""
    out: dict[str, dict[str, Any]] = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[row.get("kind", "train")] = row
    return out


def _files(path: str) -> list[str]:
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def stop_reason(step: int, num_steps: int, reason: str | None = None) -> str:
    """Why training ended at `step`: num_steps reached, else `reason` (`loop.last_stop_reason`:
    a stop signal, max_train_minutes, stop_at) when the loop gave one."""
    if step >= num_steps:
        return f"config.training.num_steps={num_steps} reached"
    if reason:
        return reason
    return ("stopped early (a stop signal, config.training.max_train_minutes or non-finite steps: "
            "see the lines above); rerun the same command to continue")


def summary(workdir: str, mode: str, config: Any, reason: str | None = None) -> str:
    """The end-of-run lines for `--mode=mode` (train, eval, sample) of `workdir` (module doc);
    `reason`: why training stopped early, if it did (`stop_reason`)."""
    last = _last_metrics(workdir)
    ckpts = sorted(int(n) for n in _files(os.path.join(workdir, "checkpoints")) if n.isdigit())
    step = ckpts[-1] if ckpts else int(last.get("train", {}).get("step", 0))
    lines = [f"done: --mode={mode} of {workdir} at step {step}"]
    if mode == "train":
        lines[0] += ": " + stop_reason(step, int(config.training.num_steps), reason)
    shown = [f"{kind} {k} {row[k]:.4g} (step {row.get('step')})" for kind, row in sorted(last.items())
             for k in _METRICS if isinstance(row.get(k), (int, float))]
    if shown and mode in ("train", "eval"):
        lines.append("final: " + "; ".join(shown))
    paths = []
    if ckpts:
        paths.append(f"{os.path.join(workdir, 'checkpoints')} (steps {ckpts})")
    if mode == "train":
        for name in ("metrics.jsonl", "tensorboard"):
            if os.path.exists(os.path.join(workdir, name)):
                paths.append(os.path.join(workdir, name))
        samples = _files(os.path.join(workdir, "samples"))
        if samples:
            paths.append(f"{os.path.join(workdir, 'samples')} ({len(samples)} files)")
    if mode == "eval":
        paths += [os.path.join(workdir, "eval", n) for n in _files(os.path.join(workdir, "eval"))]
    if mode == "sample":
        from discrete_diffusion.training.loop import sample_file_name, sample_seed

        name = sample_file_name(step, config.sampler.get("name", "ancestral"), sample_seed(config))
        paths.append(os.path.join(workdir, "samples", name))
    lines.append("wrote: " + (", ".join(paths) if paths else "nothing"))
    return "\n".join(lines)
