"""Duo's curriculum against plain uniform-diffusion training at equal wall-clock on Shakespeare:
the held-out NELBO curve of each, against the seconds of training each has had.

    JAX_PLATFORMS=cpu python benchmarks/duo_equal_time.py --out=/tmp/duo_equal_time \
        [--minutes 4] [--chunk_s 10] [--eval_every_s 30] [--curriculum_fraction 0.5] [--seed 0]
        [--config.training.batch_size=32 ...]

Both runs live in one process and take turns: each trains for --chunk_s seconds of its own, then
the other does. Each run is charged only the time of its own training steps (evaluation excluded,
compilation included in neither: one untimed warm-up step each), so a busy machine slows both
alike, which two runs started side by side or one after the other would not guarantee. Every
--eval_every_s seconds of a run's own training time its EMA parameters are evaluated on the same
held-out batches with the same keys (`Trainer.evaluate`: the discrete uniform NELBO, a bound for
both models; Duo's relaxed curriculum loss is not reported because it is not a bound).

Arms (--arms, default all three): 'duo' = configs/shakespeare_duo.py; 'uniform' =
configs/shakespeare_uniform.py (plain uniform diffusion, denoiser parameterization); 'uniform_loo' =
the same with the LOO parameterization Duo uses, so duo against uniform_loo differs only in the
curriculum (same network, data, batch, optimizer). Duo's `curriculum_steps` is set to
--curriculum_fraction of the steps the Duo run is expected to take, estimated from its measured
time per step after the warm-up, because the curriculum is counted in steps and this comparison in
seconds).

Writes <out>/duo_equal_time.json (the curves) and <out>/duo_equal_time.png (bits/char against
seconds, with +- 1 standard error bands), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/ (and the package, when it is not installed)

import equal_time  # noqa: E402  (benchmarks/, this script's folder, is on sys.path)
from equal_time import Run  # noqa: E402


def seconds_per_step(run: Run, n: int = 5) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        run.step()
    jax.block_until_ready(run.state.params)
    return (time.perf_counter() - t0) / n


def main(argv: list[str]) -> None:
    from configs import shakespeare_duo, shakespeare_uniform

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=4.0, help="training minutes per run")
    p.add_argument("--chunk_s", type=float, default=10.0)
    p.add_argument("--eval_every_s", type=float, default=30.0)
    p.add_argument("--eval_batches", type=int, default=4)
    p.add_argument("--curriculum_fraction", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", nargs="+", default=["duo", "uniform", "uniform_loo"],
                   choices=["duo", "uniform", "uniform_loo"])
    args, overrides = p.parse_known_args(argv)

    configs = {"duo": shakespeare_duo.get_config(), "uniform": shakespeare_uniform.get_config(),
               "uniform_loo": shakespeare_uniform.get_config()}
    configs["uniform_loo"].model.parameterization = "loo"
    for c in configs.values():
        c.training.seed = args.seed
        c.training.max_train_minutes = 0.0
        for o in overrides:  # --config.a.b=value
            if not o.startswith("--config."):
                raise SystemExit(f"unknown flag {o!r} (overrides look like --config.training.batch_size=32)")
            path, value = o[len("--config."):].split("=", 1)
            *parents, leaf = path.split(".")
            node = c
            for part in parents:
                node = node[part]
            node[leaf] = type(node[leaf])(value) if node[leaf] is not None else value
        c.training.num_steps = 10**9
    # Duo's curriculum is counted in steps: estimate the steps the Duo run will take.
    probe = Run("duo", configs["duo"], args.eval_batches)
    sps = seconds_per_step(probe)
    expected = int(60 * args.minutes / sps)
    with configs["duo"].unlocked():
        configs["duo"].method.curriculum_steps = max(1, int(args.curriculum_fraction * expected))
    print(f"duo: {sps * 1e3:.0f} ms/step in the probe, about {expected} steps in {args.minutes} "
          f"min; curriculum_steps = {configs['duo'].method.curriculum_steps}", flush=True)
    if "duo" not in args.arms:
        raise SystemExit("--arms must include 'duo'")
    runs = [Run(name, configs[name], args.eval_batches) for name in args.arms]
    for r in runs:
        r.evaluate()
    budget = 60.0 * args.minutes
    while any(r.seconds < budget for r in runs):
        for r in runs:
            if r.seconds >= budget:
                continue
            next_eval = (math.floor(r.seconds / args.eval_every_s) + 1) * args.eval_every_s
            r.train_for(min(args.chunk_s, next_eval - r.seconds, budget - r.seconds) + 1e-3)
            if r.seconds >= next_eval - 1e-2 or r.seconds >= budget:
                row = r.evaluate()
                print(f"{r.name:8s} {row['seconds']:7.1f} s  step {row['steps']:6d}  "
                      f"{row['bpt']:.3f} +- {row['se_bpt']:.3f} bits/char", flush=True)

    os.makedirs(args.out, exist_ok=True)
    result = {"minutes": args.minutes, "chunk_s": args.chunk_s, "seed": args.seed,
              "duo_curriculum_steps": int(configs["duo"].method.curriculum_steps),
              "curves": {r.name: r.curve for r in runs}}
    with open(os.path.join(args.out, "duo_equal_time.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("\nseconds " + "".join(f"  {r.name + ' bits/char (step)':28s}" for r in runs))
    for rows in zip(*(r.curve for r in runs), strict=False):
        print(f"{rows[0]['seconds']:7.0f} " + "".join(
            f"  {c['bpt']:6.3f} +- {c['se_bpt']:.3f} ({c['steps']:5d})     " for c in rows))
    plot(runs, os.path.join(args.out, "duo_equal_time.png"), result["duo_curriculum_steps"])


def plot(runs: list[Run], path: str, curriculum_steps: int) -> None:
    """`equal_time.plot` with a line where Duo's curriculum has ended."""

    def curriculum_end(ax) -> None:
        ends = [c["seconds"] for c in runs[0].curve if c["steps"] >= curriculum_steps]
        if ends:
            ax.axvline(ends[0], color="C0", ls=":", lw=1, label="duo: curriculum ends (by here)")

    equal_time.plot(runs, path, ylabel="held-out NELBO (bits/char)",
                    title="Shakespeare: Duo curriculum vs uniform, equal wall-clock",
                    extra=curriculum_end)


if __name__ == "__main__":
    main(sys.argv[1:])
