"""Dropout's mask on this backend: jax.random.bernoulli against the written-out Threefry of
`models/dropout.py`, in a dropout forward and backward pass, timed alternately in one process.

    python benchmarks/dropout_bits.py [--shape 32,256,256] [--rate 0.1] [--runs 21]

Three programs, each value_and_grad of sum(w * dropout(x)) over a float32 x of `--shape` (the
mask drawn once, used by the forward and the backward pass):

    jax            keep = jax.random.bernoulli(key, 1 - rate, shape) (flax.linen.Dropout's draw)
    library        keep = models.dropout.bernoulli(...) (the written-out hash on the CPU, jax's
                   elsewhere: what the models run on this backend)
    written_out    keep = models.dropout.bernoulli_written_out(...) on every backend

Printed per program: median ms, the ratio to jax's, and whether its outputs equal jax's bit for
bit; with the device kind, the CPU model and the load average. Defaults: the small model's
activations ([32, 256, 256]); `--shape 2,1024,768` is the 12-layer model's at batch 2.
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

from discrete_diffusion.models.dropout import bernoulli, bernoulli_written_out  # noqa: E402


def program(draw, rate: float):
    """Compiled value_and_grad (in x and w) of sum(w * where(keep, x / (1 - rate), 0))."""
    keep_prob = 1.0 - rate

    def loss(x, w, key):
        keep = draw(key, keep_prob, x.shape)
        return jnp.sum(w * jnp.where(keep, x / keep_prob, 0.0))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="32,256,256")
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.shape.split(","))
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), shape)
    key = jax.random.fold_in(jax.random.key(2), 7)
    draws = {"jax": lambda k, p, s: jax.random.bernoulli(k, p, s), "library": bernoulli,
             "written_out": bernoulli_written_out}
    programs = {name: program(draw, args.rate) for name, draw in draws.items()}
    outputs = {name: jax.block_until_ready(p(x, w, key)) for name, p in programs.items()}
    times = median_times(programs, (x, w, key), args.runs)
    print(f"dropout forward + backward, float32 {list(shape)}, rate {args.rate}, median of "
          f"{args.runs} alternating runs; {jax.devices()[0].device_kind}; {machine_line()}")
    for name, t in times.items():
        same = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
            jax.tree.leaves(outputs[name]), jax.tree.leaves(outputs["jax"]), strict=True))
        print(f"  {name:12s} {t * 1e3:9.2f} ms  {t / times['jax']:6.3f}x jax's  "
              f"equal to jax's bit for bit: {same}")


if __name__ == "__main__":
    main()
