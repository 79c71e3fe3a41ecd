"""Training metrics (clu.metrics collections) and the metric writer (console, JSONL, TensorBoard).

The train step returns a `TrainMetrics` collection built inside `jax.jit`; the loop merges the
collections of the steps between two log lines and computes their means:

    m = TrainMetrics.single_from_model_output(loss=..., nelbo=..., grad_norm=..., lr=...)
    acc = m if acc is None else acc.merge(m)
    acc.compute()   # {'loss': mean over steps, ..., 'lr': the last value}

Units: loss and nelbo in nats per token (the NELBO per token of a batch is
sum_{b,i} nelbo_{b,i} / sum_{b,i} w_{b,i} over the real tokens, w the padding mask).

`MetricWriter` writes every scalar to the console, to workdir/metrics.jsonl (one JSON object per
line: {"step", "kind", ...}) and to TensorBoard event files in workdir/tensorboard (through
`tensorboard`'s TensorFlow-free event writer; clu.metric_writers would import TensorFlow).
Only process 0 writes.
"""

# No `from __future__ import annotations`: clu reads the Collection field annotations as classes.

import json
import math
import os
import time
from typing import Any

import flax
import jax
from clu import metrics as clu_metrics

LN2 = math.log(2.0)


@flax.struct.dataclass
class TrainMetrics(clu_metrics.Collection):
    """Per-step training scalars; `compute()` gives their means (lr: the last value)."""

    loss: clu_metrics.Average.from_output("loss")
    nelbo: clu_metrics.Average.from_output("nelbo")
    grad_norm: clu_metrics.Average.from_output("grad_norm")
    lr: clu_metrics.LastValue.from_output("lr")

    def __getitem__(self, name: str) -> Any:
        """`m[name]` is `m.compute()[name]` (handy for a single step's metrics)."""
        return self.compute()[name]


_METRIC_CLASSES: dict[tuple[str, ...], type] = {}


def train_metrics_class(extra: tuple[str, ...] = ()) -> type:
    """`TrainMetrics` plus an `Average` of each name in `extra` (a method's own metrics, from
    `aux['metrics']` of its loss); one class per tuple of names."""
    extra = tuple(sorted(n for n in extra if n not in TrainMetrics.__annotations__))
    if not extra:
        return TrainMetrics
    if extra not in _METRIC_CLASSES:
        annotations = {**TrainMetrics.__annotations__,
                       **{n: clu_metrics.Average.from_output(n) for n in extra}}
        cls = type("MethodTrainMetrics", (clu_metrics.Collection,),
                   {"__annotations__": annotations, "__getitem__": TrainMetrics.__getitem__})
        _METRIC_CLASSES[extra] = flax.struct.dataclass(cls)
    return _METRIC_CLASSES[extra]


def perplexity(nelbo: float) -> float:
    """exp(nelbo), nelbo in nats per token (clipped to avoid overflow)."""
    return float(math.exp(min(float(nelbo), 700.0)))


def with_derived(metrics: dict[str, float]) -> dict[str, float]:
    """Adds bits per token `bpt = nelbo / ln 2` and perplexity `ppl = exp(nelbo)`."""
    out = {k: float(v) for k, v in metrics.items()}
    if "nelbo" in out:
        out["bpt"] = out["nelbo"] / LN2
        out["ppl"] = perplexity(out["nelbo"])
    return out


class _TensorBoard:
    """Scalars to TensorBoard event files without TensorFlow."""

    def __init__(self, logdir: str):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        self._writer = EventFileWriter(logdir)

    def write(self, step: int, scalars: dict[str, float], prefix: str) -> None:
        values = [self._summary.Value(tag=f"{prefix}/{k}", simple_value=float(v))
                  for k, v in scalars.items()]
        self._writer.add_event(self._event(wall_time=time.time(), step=int(step),
                                           summary=self._summary(value=values)))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricWriter:
    """Console + workdir/metrics.jsonl + workdir/tensorboard; a no-op on processes other than 0."""

    def __init__(self, workdir: str | None, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl") if workdir else None
        self._tb = None
        if self.enabled and workdir and tensorboard:
            self._tb = _TensorBoard(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        text = " ".join(f"{k}={v:.4g}" for k, v in clean.items())
        print(f"[{prefix}] step {step}: {text}", flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), "kind": prefix, **clean}) + "\n")
        if self._tb is not None:
            self._tb.write(step, clean, prefix)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


__all__ = ["LN2", "MetricWriter", "TrainMetrics", "perplexity", "train_metrics_class",
           "with_derived"]
