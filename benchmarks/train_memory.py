"""Training-step memory: XLA's memory analysis of the compiled train step and the measured peak
RSS, per configuration (batch size x logits chunking x attention implementation x remat).

    python benchmarks/train_memory.py --config=configs/owt_absorbing.py --random_tokens=50257 \\
        --dtype=float32 --batch_sizes=2,4,8 --logits_chunk=0,128 --attention=xla,blockwise \\
        --remat=false,true [--run] [--steps=1] [--config.data.seq_len=1024 ...]

Every combination of the comma-separated lists is one configuration. Each is compiled in a fresh
child process (so its peak RSS is its own), with the library's own jitted, sharded train step
(`training.Trainer._train_step_checked`: forward, backward, optimizer update, EMA) on uniform
random ids in [0, K) (`--random_tokens=K`; the data pipeline is not needed). Printed per row:

    temp      XLA's scratch (temporary) bytes of the step: activations kept for the backward pass,
              logits, gradients before the update (`compiled.memory_analysis().temp_size_in_bytes`)
    args      bytes of the step's arguments (the train state: parameters, EMA, Adam moments; the
              batch)
    out       bytes of its outputs (the new state, aliased with the donated old one, and metrics)
    alias     output bytes that reuse donated argument buffers
    xla peak  args + out - alias + temp: what XLA's buffer assignment needs at once
    rss       with --run: the child's peak resident set size (ru_maxrss) after `--steps` real
              steps (compilation and the Python runtime included); 'compile only' otherwise

Without --run only compilation happens (minutes for the 12-layer model on a CPU, little memory);
with --run each configuration also executes (the 12-layer d = 768 model at L = 1024 and batch 8
takes about 2 minutes per step on a 2-core CPU). A configuration whose compilation or step fails
(e.g. out of memory) prints its error and the next one runs.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Trainer config file.", lock_config=False)
flags.DEFINE_integer("random_tokens", 50257, "Train on uniform random ids in [0, K).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_list("batch_sizes", ["2"], "Global batch sizes.")
flags.DEFINE_list("logits_chunk", ["0"], "config.model.logits_chunk values (0 = whole logits).")
flags.DEFINE_list("attention", ["xla"], "config.model.attention_impl values.")
flags.DEFINE_list("remat", ["false"], "config.model.remat values (true/false).")
flags.DEFINE_boolean("run", False, "Also execute --steps steps and report the peak RSS.")
flags.DEFINE_integer("steps", 1, "Steps executed with --run.")
flags.DEFINE_string("child", None, "Internal: JSON of one configuration to measure.")
flags.mark_flags_as_required(["config"])

GB = 1e9


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise app.UsageError(f"--remat values must be true/false, got {text!r}")


def measure(setting: dict) -> dict:
    """Compile (and with setting['run'] execute) the train step of one configuration."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from discrete_diffusion import config_validation, training

    config = FLAGS.config
    k = FLAGS.random_tokens
    with config.unlocked():
        if FLAGS.dtype:
            config.model.dtype = FLAGS.dtype
        config.process.num_classes = k
        config.training.batch_size = setting["batch"]
        config.model.logits_chunk = setting["chunk"]
        config.model.attention_impl = setting["attention"]
        config.model.remat = setting["remat"]
    config_validation.validate(config)
    config = config.copy_and_resolve_references()
    seq_len = int(config.data.seq_len)
    trainer = training.get_trainer(config, k, seq_len)
    batch_struct = {"tokens": jax.ShapeDtypeStruct((setting["batch"], seq_len), jnp.int32,
                                                   sharding=trainer.batch_sharding)}
    t0 = time.time()
    compiled = trainer._train_step_checked.lower(trainer.abstract_state(), batch_struct).compile()
    mem = compiled.memory_analysis()
    result = {
        "compile_s": time.time() - t0,
        "temp": mem.temp_size_in_bytes, "args": mem.argument_size_in_bytes,
        "out": mem.output_size_in_bytes, "alias": mem.alias_size_in_bytes,
    }
    if setting["run"]:
        state = trainer.init_state(int(config.training.seed))
        rng = np.random.default_rng(0)
        batch = trainer.shard_batch(
            {"tokens": rng.integers(0, k, (setting["batch"], seq_len), np.int32)})
        times = []
        for _ in range(FLAGS.steps):
            t = time.time()
            state, metrics, health = compiled(state, batch)
            jax.block_until_ready(health)
            times.append(time.time() - t)
        result["step_s"] = float(np.median(times))
        result["loss"] = float(health["loss"])
        result["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB -> bytes
    return result


def main(argv):
    del argv
    if FLAGS.child:
        print("RESULT " + json.dumps(measure(json.loads(FLAGS.child))), flush=True)
        return
    settings = [
        {"batch": int(b), "chunk": int(c), "attention": a, "remat": _bool(r), "run": FLAGS.run}
        for b, c, a, r in itertools.product(FLAGS.batch_sizes, FLAGS.logits_chunk,
                                            FLAGS.attention, FLAGS.remat)
    ]
    config = FLAGS.config
    print(f"config: layers={config.model.get('num_layers')} size={config.model.size} "
          f"L={config.data.seq_len} K={FLAGS.random_tokens} "
          f"dtype={FLAGS.dtype or config.model.dtype}; GB = 1e9 bytes", flush=True)
    header = (f"{'batch':>5} {'chunk':>5} {'attention':>9} {'remat':>5} | {'temp':>7} {'args':>6} "
              f"{'out':>6} {'alias':>6} {'xla peak':>8} | {'rss':>7} {'step s':>7} {'compile s':>9}")
    print(header)
    print("-" * len(header), flush=True)
    passthrough = [a for a in sys.argv[1:] if a.startswith("--config")]  # file and overrides
    for s in settings:
        cmd = [sys.executable, os.path.abspath(__file__), f"--random_tokens={FLAGS.random_tokens}",
               f"--steps={FLAGS.steps}", f"--child={json.dumps(s)}", *passthrough]
        if FLAGS.dtype:
            cmd.append(f"--dtype={FLAGS.dtype}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        row = f"{s['batch']:>5} {s['chunk']:>5} {s['attention']:>9} {str(s['remat']):>5} | "
        if proc.returncode != 0 or not lines:
            err = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(row + f"failed (exit {proc.returncode}): {err[:200]}", flush=True)
            continue
        r = json.loads(lines[-1][7:])
        peak = r["args"] + r["out"] - r["alias"] + r["temp"]
        rss = f"{r['rss'] / GB:7.2f}" if "rss" in r else f"{'-':>7}"
        step = f"{r['step_s']:7.1f}" if "step_s" in r else f"{'-':>7}"
        print(row + f"{r['temp'] / GB:7.2f} {r['args'] / GB:6.2f} {r['out'] / GB:6.2f} "
              f"{r['alias'] / GB:6.2f} {peak / GB:8.2f} | {rss} {step} {r['compile_s']:9.1f}",
              flush=True)


if __name__ == "__main__":
    app.run(main)
