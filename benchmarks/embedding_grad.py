"""The token embedding's gradient: autodiff of `jnp.take` (a scatter-add into a zeroed [V, D]
table) against `models.embedding.embedding_lookup` (sums in a [T + 1, D] table, then one gather,
when T + 1 < V), timed alternately in one process.

    python benchmarks/embedding_grad.py [--tokens 2048] [--vocab 50258] [--d 768] [--runs 21]

The program is value_and_grad in the table of sum(w * E[ids]) for uniform random ids ([tokens])
and a random w ([tokens, d]), float32. Printed per version: XLA's bytes accessed, the median ms,
the ratio to autodiff's and whether the gradient equals autodiff's bit for bit; with the CPU
model and the load average. Defaults: the 12-layer model at batch 2 (T = 2048, V = 50257 + mask).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from alternating import median_times  # noqa: E402
from train_throughput import machine_line  # noqa: E402

from discrete_diffusion.models.embedding import embedding_lookup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=50258)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = jnp.asarray(0.02 * rng.standard_normal((args.vocab, args.d)), jnp.float32)
    ids = jnp.asarray(rng.integers(0, args.vocab, (args.tokens,)), jnp.int32)
    w = jnp.asarray(rng.standard_normal((args.tokens, args.d)), jnp.float32)
    lookups = {"autodiff (jnp.take)": lambda t, i: jnp.take(t, i, axis=0),
               "embedding_lookup": embedding_lookup}
    programs = {name: jax.jit(jax.value_and_grad(lambda t, i, w, f=f: jnp.sum(w * f(t, i))))
                .lower(table, ids, w).compile() for name, f in lookups.items()}
    outs = {name: p(table, ids, w) for name, p in programs.items()}
    times = median_times(programs, (table, ids, w), args.runs)
    first = next(iter(programs))
    print(f"embedding gradient, T {args.tokens}, V {args.vocab}, D {args.d}, float32; median of "
          f"{args.runs} alternating runs; {machine_line()}")
    for name, t in times.items():
        same = bool(np.array_equal(np.asarray(outs[name][1]), np.asarray(outs[first][1])))
        gb = programs[name].cost_analysis()["bytes accessed"] / 1e9
        print(f"  {name:22s} {gb:6.3f} GB {t * 1e3:8.2f} ms  {t / times[first]:5.2f}x  "
              f"gradient equal bit for bit: {same}")


if __name__ == "__main__":
    main()
