"""Cost of exact categorical sampling (64 random bits per class) against jax.random.categorical.

    python benchmarks/categorical_sampling.py [--batch 64] [--vocab 32768 50257] [--repeats 5]

Prints milliseconds per call and the ratio for each vocabulary size; each call draws one class for
each of `batch` rows (e.g. 64 = 4 sequences x 16 positions).
"""

from __future__ import annotations

import argparse
import time

import jax

from discrete_diffusion.sampling.categorical import categorical


def _time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, nargs="+", default=[32768, 50257])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, batch rows: {args.batch}")
    print(f"{'V':>7} {'exact (ms)':>11} {'jax f32 (ms)':>13} {'jax highest (ms)':>17} {'ratio':>6}")
    for vocab in args.vocab:
        logits = jax.random.normal(jax.random.key(0), (args.batch, vocab)) * 3.0
        key = jax.random.key(1)
        exact = _time(jax.jit(categorical), key, logits, repeats=args.repeats)
        f32 = _time(jax.jit(jax.random.categorical), key, logits, repeats=args.repeats)
        highest = _time(jax.jit(lambda k, x: jax.random.categorical(k, x, mode="highest")),
                        key, logits, repeats=args.repeats)
        print(f"{vocab:>7} {exact:>11.2f} {f32:>13.2f} {highest:>17.2f} {exact / f32:>6.2f}")


if __name__ == "__main__":
    main()
