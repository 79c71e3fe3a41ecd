"""Training-step memory: XLA's memory analysis of the compiled train step and the measured peak
RSS, per configuration (batch size x logits chunking x attention implementation x remat).

    python benchmarks/train_memory.py --config=configs/owt_absorbing.py --random_tokens=50257 \\
        --dtype=float32 --batch_sizes=2,4,8 --logits_chunk=0,128 --attention=xla,blockwise \\
        --remat=false,true [--nonfinite_skip=cond,select] [--run] [--steps=1] [--top_buffers=12] \\
        [--config.data.seq_len=1024 ...]

Every combination of the comma-separated lists (also --nonfinite_skip, the values of
config.training.nonfinite_skip: 'cond' or 'select', see training/trainer.py) is one configuration.
Each is compiled in a fresh child process (so its peak RSS is its own), with the library's own
jitted, sharded train step (`training.Trainer._train_step_checked`: forward, backward, optimizer
update, EMA) on uniform random ids in [0, K) (`--random_tokens=K`; no data pipeline needed).
Printed per row:

    temp      XLA's scratch (temporary) bytes of the step: activations kept for the backward pass,
              logits, gradients before the update (`compiled.memory_analysis().temp_size_in_bytes`)
    args      bytes of the step's arguments (the train state: parameters, EMA, Adam moments; the
              batch)
    out       bytes of its outputs (the new state, aliased with the donated old one, and metrics)
    alias     output bytes that reuse donated argument buffers
    xla peak  args + out - alias + temp: what XLA's buffer assignment needs at once
    rss       with --run: the child's peak resident set size (ru_maxrss) after `--steps` real
              steps (compilation and the Python runtime included); 'compile only' otherwise

With --top_buffers=N each child also dumps XLA's optimised module of the step and its buffer
reports (`--xla_dump_to`, a temporary folder, removed after) and prints, under its row, the
instruction at which XLA's heap peaks, the argument (donated state, batch) and scratch bytes live
there, the N largest scratch values live there (bytes, shape, the jax operation that made them,
e.g. `.../Dropout_0/jit(_bernoulli)/jit(_uniform)/add`: dropout's random bits), and the scratch
live there summed by jax operation ('copy': a layout copy XLA inserted; '?': a tuple element).

Without --run only compilation happens (minutes for the 12-layer model on a CPU, little memory);
with --run each configuration also executes (the 12-layer d = 768 model at L = 1024 and batch 8
takes about 2 minutes per step on a 2-core CPU). A configuration whose compilation or step fails
(e.g. out of memory) prints its error and the next one runs.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import pathlib
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from discrete_diffusion import config_fields  # noqa: E402  (parsing the config imports jax)

FLAGS = flags.FLAGS
config_fields.define_config_flag("config", "Trainer config file.", lock_config=False)
flags.DEFINE_integer("random_tokens", 50257, "Train on uniform random ids in [0, K).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_list("batch_sizes", ["2"], "Global batch sizes.")
flags.DEFINE_list("logits_chunk", ["0"], "config.model.logits_chunk values (0 = whole logits).")
flags.DEFINE_list("attention", ["xla"], "config.model.attention_impl values.")
flags.DEFINE_list("remat", ["false"], "config.model.remat values (true/false).")
flags.DEFINE_list("nonfinite_skip", [], "config.training.nonfinite_skip values (default: the "
                  "config's).")
flags.DEFINE_integer("top_buffers", 0, "Print the N largest values live at XLA's heap peak.")
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


def peak_values(dump_dir: str, top: int) -> dict:
    """The values live at the peak of XLA's heap, from its dump of the optimised step.

    Reads `*_train_step_impl*after_optimizations-live-range.txt` (its 'Live ranges at <i>
    (peak):' list: value, bytes) and the optimised HLO text (each value's shape and the jax
    operation in its metadata). Entry parameters count as arguments, everything else as scratch.
    """
    ranges = glob.glob(os.path.join(dump_dir, "*_train_step_impl*after_optimizations-live-range.txt"))
    if not ranges:
        return {"error": f"no live-range dump in {dump_dir}"}
    text = pathlib.Path(ranges[0]).read_text().splitlines()
    head = next((i for i, x in enumerate(text) if "(peak):" in x), None)
    if head is None:
        return {"error": "the live-range dump has no peak"}
    live = []
    for line in text[head + 1:]:
        m = re.match(r"\s+(\S+?)\{[^}]*\}: (\d+) bytes", line)
        if not m:
            break
        live.append((m.group(1), int(m.group(2))))
    hlo = pathlib.Path(ranges[0].replace("-live-range.txt", ".txt")).read_text()
    entry = hlo[hlo.index("\nENTRY "):]
    info = {}
    for line in entry.splitlines():
        m = re.match(r"\s+(?:ROOT )?%(\S+) = (\S+) ([\w-]+)\(", line)
        if m:
            op_name = re.search(r'op_name="([^"]*)"', line)
            info[m.group(1)] = (m.group(2), m.group(3), op_name.group(1) if op_name else "")
    args = sum(b for name, b in live if info.get(name, ("", "", ""))[1] == "parameter")
    scratch = [(b, name, *info.get(name, ("?", "?", ""))) for name, b in live
               if info.get(name, ("", "", ""))[1] != "parameter"]
    by_op: dict[str, list] = {}
    for b, _, _, op, op_name in scratch:
        key = re.sub(r"^jit\(_train_step_impl\)/", "", op_name or op)
        by_op.setdefault(key, [0, 0])
        by_op[key][0] += b
        by_op[key][1] += 1
    at = re.search(r"at (\d+)", text[head])
    return {"at": at.group(1) if at else "?", "args": args, "temp": sum(b for b, *_ in scratch),
            "values": [{"bytes": b, "name": name, "shape": shape, "op": op_name or op}
                       for b, name, shape, op, op_name in sorted(scratch, reverse=True)[:top]],
            "by_op": sorted(([b, n, k] for k, (b, n) in by_op.items()), reverse=True)[:top]}


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
        if setting["skip"]:
            config.training.nonfinite_skip = setting["skip"]
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
    if setting.get("dump"):
        result["peak"] = peak_values(setting["dump"], FLAGS.top_buffers)
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
        {"batch": int(b), "chunk": int(c), "attention": a, "remat": _bool(r), "skip": k,
         "run": FLAGS.run}
        for b, c, a, r, k in itertools.product(FLAGS.batch_sizes, FLAGS.logits_chunk,
                                               FLAGS.attention, FLAGS.remat,
                                               FLAGS.nonfinite_skip or [""])
    ]
    config = FLAGS.config
    print(f"config: layers={config.model.get('num_layers')} size={config.model.size} "
          f"L={config.data.seq_len} K={FLAGS.random_tokens} "
          f"dtype={FLAGS.dtype or config.model.dtype}; GB = 1e9 bytes", flush=True)
    header = (f"{'batch':>5} {'chunk':>5} {'attention':>9} {'remat':>5} {'skip':>6} | {'temp':>7} "
              f"{'args':>6} {'out':>6} {'alias':>6} {'xla peak':>8} | {'rss':>7} {'step s':>7} "
              f"{'compile s':>9}")
    print(header)
    print("-" * len(header), flush=True)
    passthrough = [a for a in sys.argv[1:] if a.startswith("--config")]  # file and overrides
    for s in settings:
        env = dict(os.environ)
        if FLAGS.top_buffers:
            s["dump"] = tempfile.mkdtemp(prefix="train_memory_")
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_dump_to={s['dump']}"
                                " --xla_dump_hlo_module_re=.*_train_step_impl.*").strip()
        cmd = [sys.executable, os.path.abspath(__file__), f"--random_tokens={FLAGS.random_tokens}",
               f"--steps={FLAGS.steps}", f"--top_buffers={FLAGS.top_buffers}",
               f"--child={json.dumps(s)}", *passthrough]
        if FLAGS.dtype:
            cmd.append(f"--dtype={FLAGS.dtype}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        finally:
            if s.get("dump"):
                shutil.rmtree(s["dump"], ignore_errors=True)
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        row = (f"{s['batch']:>5} {s['chunk']:>5} {s['attention']:>9} {str(s['remat']):>5} "
               f"{s['skip'] or '-':>6} | ")
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
        if "peak" in r:
            _print_peak(r["peak"])


def _print_peak(p: dict) -> None:
    if "error" in p:
        print(f"      (no buffer report: {p['error']})", flush=True)
        return
    print(f"      XLA's heap peaks at instruction {p['at']}: arguments {p['args'] / GB:.2f} GB live, scratch "
          f"{p['temp'] / GB:.2f} GB live; largest scratch values:")
    for v in p["values"]:
        print(f"      {v['bytes'] / 1e6:9.1f} MB {v['shape']:<24} {v['op'][-80:]}")
    print("      scratch live at the peak by jax operation:")
    for b, n, op in p["by_op"]:
        print(f"      {b / 1e6:9.1f} MB in {n:4d} values  {op[-80:]}")
    print(flush=True)


if __name__ == "__main__":
    app.run(main)
