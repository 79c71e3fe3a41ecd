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
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from hlo_ops import op_kinds  # noqa: E402
from matmul_shapes import rate  # noqa: E402
from model_flops import model_flops_per_token  # noqa: E402

from discrete_diffusion import config_fields, config_validation, training  # noqa: E402

FLAGS = flags.FLAGS
config_fields.define_config_flag("config", "Trainer config file.", lock_config=False)
flags.DEFINE_integer("random_tokens", 50257, "Train on uniform random ids in [0, K).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_string("attention", None, "config.model.attention_impl ('default' = None).")
flags.DEFINE_integer("steps", 5, "Profiled steps.")
flags.DEFINE_integer("top", 25, "Names printed per plane.")
flags.DEFINE_string("trace_dir", "", "Where the trace goes ('' = a temporary folder).")
flags.DEFINE_boolean("by_kind", True, "Also the time by kind of operation (module doc).")
flags.DEFINE_integer("square_n", 2048, "Size of the square float32 matmul whose rate the "
                     "step's products are compared with (0 = none; float32 models only).")
flags.mark_flags_as_required(["config"])


_LAYER = re.compile(r"blocks_\d+")
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


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of [start, end) intervals as sorted disjoint intervals."""
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def shared_ns(merged: dict[str, list[tuple[int, int]]]) -> dict[str, float]:
    """{name: ns}: the time each name's intervals cover, every instant split evenly among the
    names running then (so the values add up to the time when any ran; an operation that runs
    beside another one on a shared core is charged half of that time, not all of it)."""
    edges = sorted((t, sign, name) for name, ivs in merged.items()
                   for a, b in ivs for t, sign in ((a, 1), (b, -1)))
    out = dict.fromkeys(merged, 0.0)
    active: set[str] = set()
    last = None
    for t, sign, name in edges:
        if active and last is not None and t > last:
            for n in active:
                out[n] += (t - last) / len(active)
        last = t
        if sign > 0:
            active.add(name)
        else:
            active.discard(name)
    return out


def time_by_name(xplane_path: str, skip: frozenset[str] | set[str] = frozenset()
                 ) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """({op name: shared ns}, {op name: wall ns}, {op name: calls}) over the first plane with XLA
    operations (the device's where there is one): each name's events over the plane's op lines
    (`_op_lines`) merged into disjoint intervals (an op whose work is split over threads counts
    once; its calls are the pieces), 'end: ...' markers, runtime spans and the names in `skip`
    left out; wall = their length, shared = `shared_ns`."""
    data = jax.profiler.ProfileData.from_file(xplane_path)
    planes = sorted(data.planes, key=lambda p: not p.name.startswith("/device"))
    for plane in planes:
        spans: dict[str, list] = collections.defaultdict(list)
        for line in _op_lines(plane):
            for event in line.events:
                if (event.name.startswith(_CONTAINERS) or event.name.startswith("end: ")
                        or event.name in skip):
                    continue
                spans[event.name].append((event.start_ns, event.end_ns))
        if spans:
            merged = {n: _merge(s) for n, s in spans.items()}
            wall = {n: float(sum(b - a for a, b in ivs)) for n, ivs in merged.items()}
            return shared_ns(merged), wall, {n: len(ivs) for n, ivs in merged.items()}
    return {}, {}, {}


def _short(source: str, width: int = 90) -> str:
    """The end of a JAX op_name, where its module path and primitive are."""
    return source if len(source) <= width else "..." + source[-width + 3:]


def print_by_kind(xplane_path: str, hlo_text: str, steps: int, step_ms: float,
                  model_flops: float, square: float | None, top: int) -> None:
    """The time by kind of operation, the matmuls' in-step rate and the decomposition of the
    fraction of the square matmul rate (module doc)."""
    ops = op_kinds(hlo_text)
    # A loop's own events span its body's operations: left out of the sharing.
    control = {n for n, op in ops.items() if op.kind == "control"}
    shared, wall, calls = time_by_name(xplane_path, control)
    every = sum(shared.values())
    overlap = sum(wall.values()) / every if every else 1.0
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    by_source: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    matmuls = []
    for name, ns in shared.items():  # control operations were left out by time_by_name
        op = ops.get(name)
        kind = op.kind if op else "unknown"
        ms = ns / 1e6 / steps
        flops = op.flops * calls[name] / steps if op else 0.0
        kinds[kind][0] += ms
        kinds[kind][1] += flops
        if kind == "matmul":
            matmuls.append((ms, flops, calls[name] / steps, name))
        if op:
            key = f"{kind:14s} " + _LAYER.sub("blocks_*", op.source.split(")/", 1)[-1])
            by_source[key][0] += ms
            by_source[key][1] += 1
    total = sum(ms for ms, _ in kinds.values())
    print(f"\nby kind (ms per step: each operation's time, every instant shared evenly among the "
          f"operations running then; {every / 1e6 / steps:.1f} ms when any ran, step "
          f"{step_ms:.1f} ms; operations overlapped {overlap:.2f}x on average):")
    for kind, (ms, flops) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        extra = f"  {flops / 1e9:9.2f} GFLOP, {flops / ms / 1e6:6.1f} GFLOP/s" if flops else ""
        print(f"  {kind:15s} {ms:9.1f} ms {100 * ms / total:5.1f}%{extra}")
    print("\nby JAX operation, layers together (ms/step, share, operations, kind, operation):")
    for key, (ms, n) in sorted(by_source.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {ms:9.1f} {100 * ms / total:5.1f}% {int(n):4d}  {key[:120]}")
    others = sorted(((ns / 1e6 / steps, name) for name, ns in shared.items()
                     if name in ops and ops[name].kind != "matmul"), reverse=True)
    print("\nslowest other operations (ms/step, kind, name, JAX operation):")
    for ms, name in others[:top]:
        print(f"  {ms:9.1f} {ops[name].kind:14s} {name:28s} {_short(ops[name].source)}")
    mm_ms, mm_flops = kinds["matmul"]
    if not mm_ms:
        return
    print("\nslowest matmul operations by time (ms/step, GFLOP/step, GFLOP/s, calls/step):")
    for ms, flops, n, name in sorted(matmuls, reverse=True)[:top]:
        print(f"  {ms:9.1f} {flops / 1e9:8.2f} {flops / ms / 1e6:7.1f} {n:6.1f}  {name:24s} "
              f"{_short(ops[name].source)}")
    in_step = mm_flops / mm_ms / 1e6
    print(f"\nmatmuls: {mm_flops / 1e9:.2f} GFLOP per step by the HLO's dot shapes (model count "
          f"{model_flops / 1e9:.2f}), {mm_ms:.1f} ms, {in_step:.1f} GFLOP/s inside the step")
    if square:
        rate_part = in_step / square
        share = mm_ms / step_ms
        credit = model_flops / mm_flops
        at_square_ms = mm_flops / (square * 1e6) + step_ms - mm_ms
        print(f"square float32 matmul rate in this process: {square:.1f} GFLOP/s\n"
              f"fraction of the square rate by the model's FLOPs "
              f"{100 * model_flops / (square * 1e6 * step_ms):.1f}% = products' rate / "
              f"square rate {rate_part:.3f} x matmul share of the step {share:.3f} x model FLOPs"
              f" / dot FLOPs {credit:.3f}\n"
              f"  every product at the square rate, the rest unchanged: "
              f"{100 * model_flops / (square * 1e6 * at_square_ms):.1f}%; no other work, the "
              f"products at their in-step rate: {100 * rate_part * credit:.1f}%")


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
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            state, _, health = compiled(state, batch)
        jax.block_until_ready(health)
        step_ms = (time.perf_counter() - start) * 1e3 / FLAGS.steps
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
    if FLAGS.by_kind:
        dims = trainer.method.model
        _, _, per_token = model_flops_per_token(state.params, int(dims.num_layers), seq_len,
                                                int(dims.d_model))
        n = FLAGS.square_n if config.model.dtype == "float32" else 0  # a float32 reference
        square = rate(lambda x, y: x @ y, (n, n), (n, n), flops=2.0 * n**3, reps=10) if n else None
        print_by_kind(paths[-1], compiled.as_text(), FLAGS.steps, step_ms,
                      per_token * rows * seq_len, square, FLAGS.top)


if __name__ == "__main__":
    app.run(main)
