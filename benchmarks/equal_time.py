"""Any configs against each other at equal wall-clock: the held-out NELBO (bits per token) of each
against the seconds of training it has had, runs taking turns in one process.

    JAX_PLATFORMS=cpu python benchmarks/equal_time.py --out=/tmp/quickstart_equal_time \
        --arm mdlm=configs/shakespeare_absorbing.py --arm ar=configs/shakespeare_ar.py \
        [--set mdlm:training.batch_size=64 ...] [--minutes 8] [--chunk_s 10] [--eval_every_s 60]

Every run trains for --chunk_s seconds of its own, then the next one does; each is charged only
the time of its own training steps (a first, compiling step and the evaluations are charged to
none), so a busy machine slows all alike, which runs started side by side or one after the other
would not guarantee. A run stops at --minutes of its own time or at its config's
training.num_steps, whichever comes first (so a config whose cosine learning-rate schedule is
sized for a time budget is run as `python -m discrete_diffusion.main` would run it). Every
--eval_every_s seconds, and at its end, a run's EMA parameters are evaluated on the same held-out
batches with the same keys (`Trainer.evaluate`: the NELBO for diffusion, the exact negative
log-likelihood for 'ar', both in bits per token, with standard errors).

--set NAME:a.b=value overrides one field of arm NAME's config (value parsed as the field's type).
Writes <out>/equal_time.json and <out>/equal_time.png and prints the table.

Text arms of different tokenizers compare in bits per character: a row's `bpc` is its bits per
token divided by the held-out split's characters per token (`validation_chars /
validation_tokens` of the data). At the end each arm draws --samples samples with its config's
sampler and reports their real-word fraction (`evaluation.text_stats.real_words`, against the
training split's vocabulary), with the held-out text's own as the reference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/ (and the package, when it is not installed)

from discrete_diffusion import training  # noqa: E402
from discrete_diffusion.data import bundle as data_lib  # noqa: E402


def load_config(path: str):
    """`get_config()` of a config file given by path (as `--config=path` would)."""
    spec = importlib.util.spec_from_file_location(f"_cfg_{abs(hash(path))}", os.path.join(ROOT, path)
                                                  if not os.path.isabs(path) else path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def apply_override(config, assignment: str) -> None:
    """'a.b=value' -> config.a.b = value, parsed as the existing field's type."""
    path, value = assignment.split("=", 1)
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    old = node[leaf]
    if isinstance(old, bool):
        node[leaf] = value.lower() in ("1", "true", "yes")
    elif old is None:
        node[leaf] = value
    else:
        node[leaf] = type(old)(value)


class Run:
    """One config's trainer, state, data and clock (seconds of its own training steps)."""

    def __init__(self, name: str, config, eval_batches: int):
        self.name = name
        self.config, self.data, self.trainer = training.loop.setup(config)
        self.max_steps = int(self.config.training.num_steps)
        self.state = self.trainer.init_state(int(self.config.training.seed))
        self.eval_batches = eval_batches
        self.seconds, self.steps, self.curve = 0.0, 0, []
        info = self.data.info
        self.chars_per_token = (info["validation_chars"] / info["validation_tokens"]
                                if info.get("validation_tokens") else None)
        self.step()  # compile outside the clock (counted as a step: the optimizer took it)

    def step(self) -> None:
        self.state, _ = self.trainer.train_step(self.state, next(self.data.train_iter))
        self.steps += 1

    @property
    def done_steps(self) -> bool:
        return self.steps >= self.max_steps

    def train_for(self, seconds: float) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds and not self.done_steps:
            self.step()
            jax.block_until_ready(self.state.step)  # no queue of dispatched steps past the chunk
        self.seconds += time.perf_counter() - t0

    def evaluate(self) -> dict:
        ev = self.trainer.evaluate(self.state.ema_params,
                                   self.data.eval_batches(self.eval_batches), seed=1234)
        row = {"seconds": self.seconds, "steps": self.steps, "bpt": ev["eval_bpt"],
               "se_bpt": ev["eval_se_bpt"]}
        per_char = data_lib.per_character(ev, self.data.info)
        if per_char:
            row["bpc"], row["se_bpc"] = per_char["eval_bpc"], per_char["eval_se_bpc"]
        self.curve.append(row)
        return row

    def sample_words(self, num_samples: int) -> dict:
        """Real-word fraction of `num_samples` samples of the config's sampler (EMA parameters)."""
        from discrete_diffusion.data import words
        from discrete_diffusion.evaluation import text_stats

        vocabulary = self.data.info.get("word_vocabulary")
        if vocabulary is None:
            return {}
        res = self.trainer.generate(self.state.ema_params, jax.random.PRNGKey(4321), num_samples,
                                    int(self.data.seq_len))
        texts = [self.data.tokenizer.decode(row.tolist()) for row in np.asarray(res.tokens)]
        out = text_stats.real_words(texts, vocabulary())
        out["heldout_real_word_fraction"] = words.heldout_fraction(self.data, vocabulary())
        out["example"] = texts[0][:160]
        return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--arm", action="append", required=True, help="NAME=path/to/config.py")
    p.add_argument("--set", action="append", default=[], help="NAME:a.b=value")
    p.add_argument("--minutes", type=float, default=8.0, help="training minutes per run")
    p.add_argument("--chunk_s", type=float, default=10.0)
    p.add_argument("--eval_every_s", type=float, default=60.0)
    p.add_argument("--eval_batches", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=0,
                   help="samples per arm at the end for the real-word fraction (0: none)")
    args = p.parse_args(argv)

    configs = {}
    for arm in args.arm:
        name, _, path = arm.partition("=")
        if not path:
            raise SystemExit(f"--arm {arm!r}: expected NAME=path/to/config.py")
        configs[name] = load_config(path)
    for s in args.set:
        name, _, assignment = s.partition(":")
        if name not in configs or "=" not in assignment:
            raise SystemExit(f"--set {s!r}: expected NAME:a.b=value with NAME in {list(configs)}")
        apply_override(configs[name], assignment)
    for c in configs.values():
        c.training.seed = args.seed
        c.training.max_train_minutes = 0.0
    runs = [Run(name, c, args.eval_batches) for name, c in configs.items()]
    budget = 60.0 * args.minutes

    def active(r: Run) -> bool:
        return r.seconds < budget and not r.done_steps

    while any(active(r) for r in runs):
        for r in runs:
            if not active(r):
                continue
            next_eval = (math.floor(r.seconds / args.eval_every_s) + 1) * args.eval_every_s
            r.train_for(min(args.chunk_s, next_eval - r.seconds, budget - r.seconds) + 1e-3)
            if r.seconds >= next_eval - 1e-2 or not active(r):
                row = r.evaluate()
                bpc = f"  {row['bpc']:.4f} +- {row['se_bpc']:.4f} bits/char" if "bpc" in row else ""
                print(f"{r.name:10s} {row['seconds']:7.1f} s  step {row['steps']:6d}  "
                      f"{row['bpt']:.4f} +- {row['se_bpt']:.4f} bits/token{bpc}", flush=True)

    words = {r.name: r.sample_words(args.samples) for r in runs} if args.samples else {}
    os.makedirs(args.out, exist_ok=True)
    result = {"minutes": args.minutes, "chunk_s": args.chunk_s, "seed": args.seed,
              "arms": args.arm, "sets": args.set, "curves": {r.name: r.curve for r in runs},
              "real_words": words}
    with open(os.path.join(args.out, "equal_time.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("\nfinal (EMA parameters, held-out bits/token +- SE, steps):")
    for r in runs:
        c = r.curve[-1]
        print(f"  {r.name:10s} {c['bpt']:.4f} +- {c['se_bpt']:.4f}  ({c['steps']} steps, "
              f"{c['seconds']:.0f} s)")
    key = "bpc" if all("bpc" in r.curve[-1] for r in runs) else "bpt"
    base = runs[-1].curve[-1][key]
    for r in runs[:-1]:
        print(f"  {r.name} / {runs[-1].name} = {r.curve[-1][key] / base:.3f} ({key})")
    for r in runs:
        if key == "bpc":
            c = r.curve[-1]
            print(f"  {r.name:10s} {c['bpc']:.4f} +- {c['se_bpc']:.4f} bits/char "
                  f"({r.chars_per_token:.3f} chars/token)")
        if words.get(r.name):
            w = words[r.name]
            print(f"  {r.name:10s} real words {w['real_word_fraction']:.3f} +- "
                  f"{w['real_word_fraction_se']:.3f} of {w['num_words']:.0f} (held-out text "
                  f"{w['heldout_real_word_fraction']:.3f}): {w['example']!r}")
    plot(runs, os.path.join(args.out, "equal_time.png"))


def plot(runs: list[Run], path: str, ylabel: str = "held-out NELBO / NLL (bits/token)",
         title: str | None = None, extra=None) -> None:
    """Held-out curves (+- 1 SE bands) of the runs against their training seconds, log scale;
    `extra(ax)` may add to the axes before the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, r in enumerate(runs):
        s = np.array([c["seconds"] for c in r.curve])
        y = np.array([c["bpt"] for c in r.curve])
        e = np.array([c["se_bpt"] for c in r.curve])
        ax.plot(s, y, "o-", color=f"C{i}", label=r.name, ms=3)
        ax.fill_between(s, y - e, y + e, color=f"C{i}", alpha=0.25)
    if extra is not None:
        extra(ax)
    ax.set_xlabel("training seconds (each run charged its own steps)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
