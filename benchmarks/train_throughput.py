"""Train-step throughput: tokens/s, step time and model FLOPs utilisation of a config's train step.

    python benchmarks/train_throughput.py --config=configs/shakespeare_absorbing.py [--steps=20]
        [--warmup=3] [--mesh=DATA,FSDP,TENSOR] [--dtype=bfloat16] [--remat] [--random_tokens=K]
        [--peak_tflops=X] [--matmul_size=1024,2048] [--stream_mb=512]
        [--attention=default,xla,blockwise]
        [--config.training.batch_size=64 ...]

The step is the library's own jitted, sharded train step (`training.Trainer._train_step_checked`,
compiled once with `.lower(...).compile()`), fed one batch repeated so that input time is
excluded; the median over `--steps` timed steps after `--warmup` untimed ones (compilation
included in warmup) is reported.

Flags beyond the config's own overrides:
    --mesh          'data,fsdp,tensor' sizes (-1 = the rest), i.e. config.mesh.{data,fsdp,tensor}
    --dtype         config.model.dtype: 'float32' | 'bfloat16' (bf16 matmuls, float32 weights, loss)
    --remat         config.model.remat = True (recompute each block's activations in the backward)
    --random_tokens K: skip the data pipeline and train on uniform random ids in [0, K) at
                    config.data.seq_len (for configs whose data is not prepared here, e.g. the
                    OpenWebText configs with the GPT-2 vocabulary K = 50257)

Model FLOPs utilisation (MFU) counts the FLOPs the model needs, not what remat recomputes
(PaLM, appendix B): per token, 6 N for the matmuls (forward 2 N, backward 4 N) with N the
parameters that enter a matmul with every token (all but the input embedding tables, norms and
biases, and the conditioning path), plus 12 n_layers L d for attention scores and values
(forward 4 L d per layer, backward twice that); the conditioning path (the adaLN projections,
the time and latent MLPs: N_cond parameters) acts on one vector per sequence and adds
6 N_cond / L per token (with per-position times it acts per token: then this undercounts):

    MFU = tokens/s * (6 N + 6 N_cond / L + 12 n_layers L d) / peak FLOP/s

The peak is the accelerator's dense bf16 rate (table `PEAK_BF16_TFLOPS` by device kind, or
`--peak_tflops`); on a CPU none is assumed and MFU is not printed.

Figure of merit on any machine: the fraction of the machine's own matmul rate that the
step achieves, both measured in this process. A jitted square matmul `a @ b` of each
`--matmul_size` n (fp32, the default; bf16 with `--dtype=bfloat16`) is timed between the timed
steps (one call or more after every step, `--matmul_runs` in all), so that the two see the same
load on a shared machine; its rate is 2 n^3 / (median time), the best size is the reference.
Printed:

    matmul rate      2 n^3 / t_matmul, GFLOP/s (the machine's attainable dense rate for a
                     model-sized matmul; 185-212 GFLOP/s fp32 on the shared 2-core CPU when
                     idle, 45 under other runs' load: compare fractions, not rates)
    model / matmul   tokens/s * (model FLOPs per token) / matmul rate: the useful work's share
                     (the goal: at least 60% on the small and the 12-layer model)
    XLA / matmul     XLA's own FLOP count of the compiled step (`cost_analysis()['flops']`: all
                     dots, elementwise ops and the optimizer update, remat recomputation
                     included) / step time / matmul rate, with XLA's 'bytes accessed' beside it

Roofline: the machine's memory bandwidth is measured in the same process, between the
steps like the matmul, by a jitted x <- 0.5 x + 1 over a float32 array of `--stream_mb` MB (far
beyond the caches; in place, x donated): bandwidth = 2 * bytes(x) / t (one read, one write).
Printed per row:

    bytes / bandwidth   XLA's bytes accessed per step / bandwidth: the step's time if it only
                        moved memory
    FLOPs / rate        model FLOPs per step / matmul rate: its time if it only multiplied
    roofline bound      max of the two (a lower bound on the step under this model of the
                        machine); 'achieved fraction of the roofline bound' = bound / step time
                        (the goal: at least 85% at the small and the 12-layer shape)

Every figure is printed with the CPU model (/proc/cpuinfo), the device kind and the load average
(os.getloadavg) at the end of the timed steps: fractions depend on the machine and its load.

Use `--matmul_size=0` to skip the matmul measurement (and the roofline).
`--attention=default,xla` builds one train step per attention implementation and alternates
their timed steps in this process (the first row is the reference of the printed step-time
ratios).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from model_flops import model_flops_per_token  # noqa: E402

from discrete_diffusion import config_fields, config_validation, training  # noqa: E402

FLAGS = flags.FLAGS
config_fields.define_config_flag("config", "Trainer config file.", lock_config=True)
flags.DEFINE_integer("steps", 20, "Timed steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (the first compiles).")
flags.DEFINE_string("mesh", None, "config.mesh sizes 'data,fsdp,tensor' (-1 = the rest).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_boolean("remat", None, "config.model.remat.")
flags.DEFINE_integer("random_tokens", None, "Random ids in [0, K) instead of the data pipeline.")
flags.DEFINE_float("peak_tflops", None, "Peak dense bf16 TFLOP/s per device (default: by kind).")
flags.DEFINE_list("matmul_size", ["1024", "2048"],
                  "Square matmul sizes n whose rate 2 n^3 / t is measured (0 = none); the best "
                  "rate is the reference.")
flags.DEFINE_integer("stream_mb", 512, "MB of the float32 array whose jitted in-place "
                     "x <- 0.5 x + 1 measures the memory bandwidth (0 = no roofline).")
flags.DEFINE_integer("matmul_runs", 20, "Timed runs per matmul size (median), spread over "
                     "the steps (at least one after each step).")
flags.DEFINE_list("attention", None, "config.model.attention_impl values to compare in this "
                  "process, steps alternating ('default' = None; 'NAME:B' sets "
                  "attention_block = B), e.g. matmul,blockwise,blockwise:256.")
flags.mark_flags_as_required(["config"])

# Dense bf16 peak TFLOP/s per device, from the vendors' datasheets (no sparsity).
PEAK_BF16_TFLOPS = {
    "H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L4": 121.0, "A10": 125.0,
    "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v6": 918.0,
}



def peak_flops(device_kind: str, override: float | None) -> float | None:
    """Peak dense bf16 FLOP/s of one device: `override` TFLOP/s, else the table's by kind."""
    if override:
        return override * 1e12
    for kind, tflops in PEAK_BF16_TFLOPS.items():
        if kind.lower() in device_kind.lower():
            return tflops * 1e12
    return None


def _matmul_fn(n: int, dtype=np.float32):
    """(compiled f, args): a jitted square matmul of size n (2 n^3 FLOPs), warmed up."""
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), dtype)
    b = jnp.asarray(rng.standard_normal((n, n)), dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    jax.block_until_ready(f(a, b))
    return f, (a, b)


class _Stream:
    """A jitted x <- 0.5 x + 1 over `megabytes` MB of float32, in place (x donated, so no call
    allocates or first-touches memory): one read and one write of x per call."""

    def __init__(self, megabytes: int):
        import jax.numpy as jnp

        self.x = jnp.ones((megabytes * (1 << 20) // 4,), jnp.float32)
        self.bytes = 2 * self.x.size * 4
        self.f = jax.jit(lambda a: 0.5 * a + 1.0, donate_argnums=0)
        self()

    def __call__(self) -> float:
        """Seconds of one call."""
        t = time.perf_counter()
        self.x = jax.block_until_ready(self.f(self.x))
        return time.perf_counter() - t


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; platform.processor() elsewhere) and core count."""
    import platform

    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                        "")
    except OSError:
        pass
    return f"{name or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def machine_line() -> str:
    """'cpu: <model>, N cores; load average a, b, c' (the context of every printed figure)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cpu: {cpu_model()}; load average {load}"


def roofline(step_s: float, model_flops: float, xla_bytes: float, matmul_rate: float,
             bandwidth: float) -> dict:
    """The step's lower bound max(FLOPs / matmul rate, bytes / bandwidth) and the fraction of it
    achieved: {'flops_s', 'bytes_s', 'bound_s', 'fraction'}."""
    flops_s, bytes_s = model_flops / matmul_rate, xla_bytes / bandwidth
    bound = max(flops_s, bytes_s)
    return {"flops_s": flops_s, "bytes_s": bytes_s, "bound_s": bound, "fraction": bound / step_s}


def xla_cost(compiled) -> dict:
    """XLA's cost analysis ('flops', 'bytes accessed', ...) of a compiled function; {} where the
    backend gives none."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - an optional figure
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def _rate(flops: float) -> str:
    return f"{flops / 1e12:.2f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.1f} GFLOP/s"


def _variant(config, impl: str | None):
    """A copy of `config` with config.model.attention_impl = impl ('default' = None; 'NAME:B'
    also sets config.model.attention_block = B, e.g. 'blockwise:256')."""
    config = config.copy_and_resolve_references()
    name, _, block = (impl or "default").partition(":")
    with config.unlocked():
        config.model.attention_impl = None if name == "default" else name
        if block:
            config.model.attention_block = int(block)
    return config


def main(argv):
    del argv
    config = FLAGS.config
    with config.unlocked():
        if FLAGS.mesh:
            sizes = [int(v) for v in FLAGS.mesh.split(",")]
            if len(sizes) != 3:
                raise app.UsageError(f"--mesh must be 'data,fsdp,tensor', got {FLAGS.mesh!r}")
            config.mesh.data, config.mesh.fsdp, config.mesh.tensor = sizes
        if FLAGS.dtype:
            config.model.dtype = FLAGS.dtype
        if FLAGS.remat is not None:
            config.model.remat = FLAGS.remat
        if FLAGS.random_tokens:
            config.process.num_classes = FLAGS.random_tokens
    config_validation.validate(config)
    if FLAGS.random_tokens:
        config = config.copy_and_resolve_references()
        seq_len, num_classes, num_labels = int(config.data.seq_len), FLAGS.random_tokens, 0
        rng = np.random.default_rng(0)
        rows = int(config.training.batch_size) // jax.process_count()
        host_batch = {"tokens": rng.integers(0, FLAGS.random_tokens, (rows, seq_len), np.int32)}
    else:
        config, data, _ = training.setup(config)
        seq_len, num_classes = int(data.seq_len), int(data.num_classes)
        num_labels = int(data.num_labels or 0)
        host_batch = next(data.train_iter)
    impls = FLAGS.attention or [config.model.get("attention_impl", None) or "default"]
    runs = []
    for impl in impls:
        cfg = _variant(config, impl)
        config_validation.validate(cfg)
        trainer = training.get_trainer(cfg, num_classes, seq_len, None, num_labels)
        state = trainer.init_state(int(cfg.training.seed))
        batch = trainer.shard_batch(host_batch)
        t0 = time.time()
        # Compiled once here: its cost analysis, and the executable that the steps run.
        compiled = trainer._train_step_checked.lower(state, batch).compile()
        cost = xla_cost(compiled)
        step = lambda s, b, c=compiled: c(s, b)[:2]  # noqa: E731
        for _ in range(FLAGS.warmup):
            state, m = step(state, batch)
        jax.block_until_ready(m)
        runs.append(dict(impl=impl, config=cfg, trainer=trainer, state=state, batch=batch,
                         step=step, cost=cost, compile_s=time.time() - t0, times=[], m=m))
    # The matmuls are timed between the steps (one call of each size after every step), so the
    # step and the matmul see the same load on a shared machine.
    sizes = [int(n) for n in FLAGS.matmul_size if int(n) > 0]
    mm_dtype = np.float32 if config.model.dtype == "float32" else jax.numpy.bfloat16
    matmuls = {n: _matmul_fn(n, mm_dtype) for n in sizes}
    mm_times = {n: [] for n in sizes}
    stream = _Stream(FLAGS.stream_mb) if FLAGS.stream_mb > 0 and sizes else None
    stream_times = []
    for _ in range(FLAGS.steps):
        for r in runs:
            t = time.perf_counter()
            r["state"], r["m"] = r["step"](r["state"], r["batch"])
            jax.block_until_ready(r["m"])
            r["times"].append(time.perf_counter() - t)
            for n, (f, args) in matmuls.items():
                for _ in range(max(1, FLAGS.matmul_runs // max(1, FLAGS.steps))):
                    t = time.perf_counter()
                    jax.block_until_ready(f(*args))
                    mm_times[n].append(time.perf_counter() - t)
            if stream:
                stream_times.append(stream())
    machine = machine_line()
    rates = {n: 2.0 * n ** 3 / float(np.median(ts)) for n, ts in mm_times.items()}
    bandwidth = stream.bytes / float(np.median(stream_times)) if stream else None
    best = max(rates.values()) if rates else None
    device = jax.devices()[0]
    tokens = int(config.training.batch_size) * seq_len
    peak = peak_flops(device.device_kind, FLAGS.peak_tflops)
    if rates:
        print("matmul rate (" + np.dtype(mm_dtype).name + ", jitted, median of "
              f"{len(next(iter(mm_times.values())))}, between the steps): "
              + ", ".join(f"n={n} {_rate(r)}" for n, r in rates.items()) + f"; {machine}")
    if bandwidth:
        print(f"memory bandwidth (jitted x <- 0.5 x + 1 in place, {FLAGS.stream_mb} MB float32, "
              f"median of "
              f"{len(stream_times)}, between the steps): {bandwidth / 1e9:.2f} GB/s; {machine}")
    base_step = None
    for r in runs:
        cfg, trainer, state, m = r["config"], r["trainer"], r["state"], r["m"]
        step_s = float(np.median(r["times"]))
        base_step = base_step or step_s
        tokens_s = tokens / step_s
        dims = trainer.method.model
        n_matmul, n_cond, flops_token = model_flops_per_token(
            state.params, int(dims.num_layers), seq_len, int(dims.d_model))
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
        print(f"\n[attention_impl={r['impl']}] devices={jax.device_count()} ({device.platform}, "
              f"{device.device_kind}; {machine}) mesh={dict(trainer.mesh.shape)} dtype={cfg.model.dtype} "
              f"remat={cfg.model.get('remat', False)}")
        print(f"params={n_params:,} (matmul {n_matmul:,} per token, {n_cond:,} per sequence) "
              f"layers={dims.num_layers} d={dims.d_model} batch={cfg.training.batch_size} seq_len={seq_len} "
              f"loss={float(m['loss']):.4f}")
        print(f"warmup+compile {r['compile_s']:.2f}s; step {step_s * 1e3:.1f} ms (median of "
              f"{len(r['times'])}; {step_s / base_step:.3f}x the first row's); "
              f"{1.0 / step_s:.2f} steps/s; {tokens_s:,.0f} tokens/s")
        achieved = tokens_s * flops_token / jax.device_count()
        line = f"model FLOPs {flops_token / 1e9:.4g} GFLOP/token; {_rate(achieved)} per device"
        if peak:
            line += f"; MFU {100 * achieved / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s (bf16 peak)"
        print(line)
        # XLA's count is of the whole (possibly multi-device) program; per device as above.
        xla_flops = float(r["cost"].get("flops", 0.0)) / jax.device_count()
        xla_bytes = float(r["cost"].get("bytes accessed", 0.0)) / jax.device_count()
        if xla_flops:
            print(f"XLA cost analysis: {xla_flops / 1e9:.4g} GFLOP/step "
                  f"({xla_flops / step_s / 1e9:.1f} GFLOP/s), {xla_bytes / 1e9:.4g} GB "
                  f"accessed/step; model/XLA FLOPs "
                  f"{flops_token * tokens / jax.device_count() / xla_flops:.3f}")
        if best:
            line = (f"achieved fraction of the matmul rate {_rate(best)}: model FLOPs "
                    f"{100 * achieved / best:.1f}%")
            if xla_flops:
                line += f", XLA FLOPs {100 * xla_flops / step_s / best:.1f}%"
            print(line + f" ({cpu_model()})")
        if best and bandwidth and xla_bytes:
            roof = roofline(step_s, flops_token * tokens / jax.device_count(), xla_bytes, best,
                            bandwidth)
            print(f"roofline: bytes / bandwidth {roof['bytes_s'] * 1e3:.1f} ms ({xla_bytes / 1e9:.4g} "
                  f"GB at {bandwidth / 1e9:.2f} GB/s), model FLOPs / matmul rate "
                  f"{roof['flops_s'] * 1e3:.1f} ms; bound {roof['bound_s'] * 1e3:.1f} ms "
                  f"({'memory' if roof['bytes_s'] > roof['flops_s'] else 'matmul'}-bound)")
            print(f"achieved fraction of the roofline bound: {100 * roof['fraction']:.1f}% "
                  f"({machine})")


if __name__ == "__main__":
    app.run(main)
