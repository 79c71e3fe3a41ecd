"""A `jax.profiler` trace of the train step, summarised into the top operations by time.

    python benchmarks/profile_train_step.py --config=configs/owt_absorbing.py --random_tokens=50257 \\
        [--dtype=bfloat16] [--attention=cudnn] [--steps=5] [--top=25] [--trace_dir=/tmp/trace] \\
        [--config.training.batch_size=64 ...]

The library's jitted train step (`training.Trainer._train_step_checked`) runs once untimed
(compilation), then `--steps` times inside `jax.profiler.trace(--trace_dir)`. The trace's
.xplane.pb is read back with `jax.profiler.ProfileData` and every event's duration is summed by
name per plane: on a GPU the device plane ('/device:GPU:0', its kernels: XLA fusions, cuDNN,
cuBLAS), on a CPU the host threads' XLA operations. Printed per plane: total busy time per step
and the `--top` names by time (ms per step, share of the plane's time, calls per step). The trace
directory stays (for TensorBoard / Perfetto) unless --trace_dir is empty (a temporary one).
"""

from __future__ import annotations

import collections
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from discrete_diffusion import config_fields, config_validation, training  # noqa: E402

FLAGS = flags.FLAGS
config_fields.define_config_flag("config", "Trainer config file.", lock_config=False)
flags.DEFINE_integer("random_tokens", 50257, "Train on uniform random ids in [0, K).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_string("attention", None, "config.model.attention_impl ('default' = None).")
flags.DEFINE_integer("steps", 5, "Profiled steps.")
flags.DEFINE_integer("top", 25, "Names printed per plane.")
flags.DEFINE_string("trace_dir", "", "Where the trace goes ('' = a temporary folder).")
flags.mark_flags_as_required(["config"])


_CONTAINERS = ("ThreadpoolListener", "ThunkExecutor", "SlinkyThreadPool", "Wait for", "$")


def _op_lines(plane) -> list:
    """The lines of a plane whose events are XLA operations, each counted once: a device's
    'XLA Ops' line (its kernels' HLO names) where it has one, else its streams; on the host the
    XLA threads (tf_XLA*), not the Python thread that waits for them."""
    lines = list(plane.lines)
    if plane.name.startswith("/device"):
        ops = [ln for ln in lines if ln.name == "XLA Ops"]
        return ops or [ln for ln in lines if ln.name not in ("XLA Modules", "Steps")]
    return [ln for ln in lines if ln.name.startswith("tf_XLA")]


def summarize(xplane_path: str, steps: int, top: int) -> dict[str, tuple]:
    """{plane name: (busy ms per step, [(name, ms per step, share, calls per step), ...])} from a
    profiler .xplane.pb: durations summed per event name over the plane's XLA-operation lines
    (`_op_lines`), runtime bookkeeping spans (thread pools, executors, waits) left out."""
    data = jax.profiler.ProfileData.from_file(xplane_path)
    out = {}
    for plane in data.planes:
        total: collections.Counter = collections.Counter()
        calls: collections.Counter = collections.Counter()
        for line in _op_lines(plane):
            for event in line.events:
                if event.name.startswith(_CONTAINERS):
                    continue
                total[event.name] += event.duration_ns
                calls[event.name] += 1
        busy = sum(total.values())
        if not busy:
            continue
        rows = [(name, ns / 1e6 / steps, ns / busy, calls[name] / steps)
                for name, ns in total.most_common(top)]
        out[plane.name] = (busy / 1e6 / steps, rows)
    return out


def main(argv):
    del argv
    config = FLAGS.config
    with config.unlocked():
        if FLAGS.dtype:
            config.model.dtype = FLAGS.dtype
        if FLAGS.attention:
            config.model.attention_impl = None if FLAGS.attention == "default" else FLAGS.attention
        config.process.num_classes = FLAGS.random_tokens
    config_validation.validate(config)
    config = config.copy_and_resolve_references()
    seq_len = int(config.data.seq_len)
    trainer = training.get_trainer(config, FLAGS.random_tokens, seq_len)
    rows = int(config.training.batch_size) // jax.process_count()
    batch = trainer.shard_batch({"tokens": np.random.default_rng(0).integers(
        0, FLAGS.random_tokens, (rows, seq_len), np.int32)})
    state = trainer.init_state(int(config.training.seed))
    compiled = trainer._train_step_checked.lower(state, batch).compile()
    state, _, health = compiled(state, batch)
    jax.block_until_ready(health)
    trace_dir = FLAGS.trace_dir or tempfile.mkdtemp(prefix="profile_train_step_")
    with jax.profiler.trace(trace_dir):
        for _ in range(FLAGS.steps):
            state, _, health = compiled(state, batch)
        jax.block_until_ready(health)
    paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise SystemExit(f"no .xplane.pb under {trace_dir}")
    print(f"trace: {paths[-1]}; {jax.devices()[0].device_kind}, batch {rows} x L {seq_len}, "
          f"dtype {config.model.dtype}, attention {config.model.get('attention_impl', None)}, "
          f"{FLAGS.steps} steps, loss {float(health['loss']):.4f}")
    planes = summarize(paths[-1], FLAGS.steps, FLAGS.top)
    device = [p for p in planes if p.startswith("/device")]
    for name in device or list(planes):
        busy, rows_ = planes[name]
        print(f"\n{name}: {busy:.1f} ms busy per step; top {len(rows_)} by time "
              f"(ms/step, share, calls/step):")
        for op, ms, share, n in rows_:
            print(f"  {ms:9.3f} {100 * share:5.1f}% {n:7.1f}  {op[:110]}")


if __name__ == "__main__":
    app.run(main)
