"""Train-step throughput: tokens/s and step time of a config's jitted, sharded train step.

    python benchmarks/train_throughput.py --config=configs/shakespeare_absorbing.py [--steps=20]
        [--warmup=3] [--config.training.batch_size=64 ...]

Uses the real data pipeline's first batch (repeated, so input time is excluded) and reports the
median over `--steps` timed steps after `--warmup` untimed ones (compilation included in warmup).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from discrete_diffusion import config_validation, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_integer("steps", 20, "Timed steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (the first compiles).")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    config = FLAGS.config
    config_validation.validate(config)
    config, data, exp = train.setup(config)
    state = exp.init_state(int(config.training.seed))
    batch = exp.shard_batch(next(data.train_iter))
    t0 = time.time()
    for _ in range(FLAGS.warmup):
        state, m = exp._train_step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.time() - t0
    times = []
    for _ in range(FLAGS.steps):
        t = time.time()
        state, m = exp._train_step(state, batch)
        jax.block_until_ready(m)
        times.append(time.time() - t)
    step_s = float(np.median(times))
    tokens = int(config.training.batch_size) * int(data.seq_len)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    print(f"devices={jax.device_count()} ({jax.devices()[0].platform}) params={n_params:,} "
          f"batch={config.training.batch_size} seq_len={data.seq_len}")
    print(f"warmup+compile {compile_s:.2f}s; step {step_s * 1e3:.1f} ms (median of {len(times)}); "
          f"{1.0 / step_s:.2f} steps/s; {tokens / step_s:,.0f} tokens/s")


if __name__ == "__main__":
    app.run(main)
