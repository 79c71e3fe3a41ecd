"""Train-step throughput: tokens/s, step time and model FLOPs utilisation of a config's train step.

    python benchmarks/train_throughput.py --config=configs/shakespeare_absorbing.py [--steps=20]
        [--warmup=3] [--mesh=DATA,FSDP,TENSOR] [--dtype=bfloat16] [--remat] [--random_tokens=K]
        [--peak_tflops=X] [--config.training.batch_size=64 ...]

The step is the library's own jitted, sharded train step (`training.Trainer._train_step`), fed one
batch repeated so that input time is excluded; the median over `--steps` timed steps after
`--warmup` untimed ones (compilation included in warmup) is reported.

Flags beyond the config's own overrides:
    --mesh          'data,fsdp,tensor' sizes (-1 = the rest), i.e. config.mesh.{data,fsdp,tensor}
    --dtype         config.model.dtype: 'float32' | 'bfloat16' (bf16 matmuls, float32 weights, loss)
    --remat         config.model.remat = True (recompute each block's activations in the backward)
    --random_tokens K: skip the data pipeline and train on uniform random ids in [0, K) at
                    config.data.seq_len (for configs whose data is not prepared here, e.g. the
                    OpenWebText configs with the GPT-2 vocabulary K = 50257)

Model FLOPs utilisation (MFU) counts the FLOPs the model needs, not what remat recomputes
(PaLM, appendix B): per token, 6 N for the matmuls (forward 2 N, backward 4 N) with N the
parameters that enter a matmul (all but the input embedding tables, norms and biases), plus
12 n_layers L d for attention scores and values (forward 4 L d per layer, backward twice that):

    MFU = tokens/s * (6 N + 12 n_layers L d) / peak FLOP/s

The peak is the accelerator's dense bf16 rate (table `PEAK_BF16_TFLOPS` by device kind, or
`--peak_tflops`); on a CPU none is assumed and MFU is not printed.
"""

from __future__ import annotations

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from discrete_diffusion import config_validation, sharding, training  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Trainer config file.", lock_config=True)
flags.DEFINE_integer("steps", 20, "Timed steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (the first compiles).")
flags.DEFINE_string("mesh", None, "config.mesh sizes 'data,fsdp,tensor' (-1 = the rest).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_boolean("remat", None, "config.model.remat.")
flags.DEFINE_integer("random_tokens", None, "Random ids in [0, K) instead of the data pipeline.")
flags.DEFINE_float("peak_tflops", None, "Peak dense bf16 TFLOP/s per device (default: by kind).")
flags.mark_flags_as_required(["config"])

# Dense bf16 peak TFLOP/s per device, from the vendors' datasheets (no sparsity).
PEAK_BF16_TFLOPS = {
    "H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L4": 121.0, "A10": 125.0,
    "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v6": 918.0,
}
_EMBEDDINGS = re.compile(r"(^|/)(token_embed|noise_embed|label_embed)/embedding$")


def peak_flops(device_kind: str, override: float | None) -> float | None:
    """Peak dense bf16 FLOP/s of one device: `override` TFLOP/s, else the table's by kind."""
    if override:
        return override * 1e12
    for kind, tflops in PEAK_BF16_TFLOPS.items():
        if kind.lower() in device_kind.lower():
            return tflops * 1e12
    return None


def model_flops_per_token(params, num_layers: int, seq_len: int, d_model: int) -> tuple[int, float]:
    """(N, 6 N + 12 n_layers L d): matmul parameters and training FLOPs per token."""
    n = 0
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        name = sharding.path_str(path)
        if x.ndim >= 2 and not _EMBEDDINGS.search(name):
            n += int(np.prod(x.shape))
    return n, 6.0 * n + 12.0 * num_layers * seq_len * d_model


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
        seq_len = int(config.data.seq_len)
        trainer = training.get_trainer(config, FLAGS.random_tokens, seq_len)
        rng = np.random.default_rng(0)
        rows = int(config.training.batch_size) // jax.process_count()
        host_batch = {"tokens": rng.integers(0, FLAGS.random_tokens, (rows, seq_len), np.int32)}
    else:
        config, data, trainer = training.setup(config)
        seq_len = int(data.seq_len)
        host_batch = next(data.train_iter)
    state = trainer.init_state(int(config.training.seed))
    batch = trainer.shard_batch(host_batch)
    t0 = time.time()
    for _ in range(FLAGS.warmup):
        state, m = trainer._train_step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.time() - t0
    times = []
    for _ in range(FLAGS.steps):
        t = time.time()
        state, m = trainer._train_step(state, batch)
        jax.block_until_ready(m)
        times.append(time.time() - t)
    step_s = float(np.median(times))
    tokens = int(config.training.batch_size) * seq_len
    tokens_s = tokens / step_s
    dims = trainer.method.model
    n_matmul, flops_token = model_flops_per_token(state.params, int(dims.num_layers), seq_len,
                                                  int(dims.d_model))
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    device = jax.devices()[0]
    print(f"devices={jax.device_count()} ({device.platform}, {device.device_kind}) mesh="
          f"{dict(trainer.mesh.shape)} dtype={config.model.dtype} remat={config.model.get('remat', False)}")
    print(f"params={n_params:,} (matmul {n_matmul:,}) layers={dims.num_layers} d={dims.d_model} "
          f"batch={config.training.batch_size} seq_len={seq_len} loss={float(m['loss']):.4f}")
    print(f"warmup+compile {compile_s:.2f}s; step {step_s * 1e3:.1f} ms (median of {len(times)}); "
          f"{1.0 / step_s:.2f} steps/s; {tokens_s:,.0f} tokens/s")
    peak = peak_flops(device.device_kind, FLAGS.peak_tflops)
    achieved = tokens_s * flops_token / jax.device_count()
    rate = f"{achieved / 1e12:.1f} TFLOP/s" if achieved >= 1e12 else f"{achieved / 1e9:.1f} GFLOP/s"
    line = f"model FLOPs {flops_token / 1e9:.4g} GFLOP/token; {rate} per device"
    if peak:
        line += f"; MFU {100 * achieved / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s (bf16 peak)"
    print(line)


if __name__ == "__main__":
    app.run(main)
