"""Cost of the exact categorical draw against jax.random.categorical.

    python benchmarks/categorical_sampling.py [--batch 64] [--vocab 32768 50257] [--repeats 5]

Each call draws one class for each of `batch` rows (e.g. 64 = 4 sequences x 16 positions) of V
logits. Columns (milliseconds per call, best of `--repeats`, compilation excluded):
  exact        `categorical(method='exact')`: the two-level 64-bit race over blocks of classes
               (sampling/categorical.py, equation (2)), the default of every sampler;
  exact probs  `categorical_probs`: the same draw from probabilities (block masses by plain sums);
  exact dense  `categorical(method='exact_dense')`: 64 random bits for every class (the old default);
  jax f32      `jax.random.categorical` (float32 Gumbel-max, biased in the tail);
  jax highest  `jax.random.categorical(mode='highest')`.
The goal: 'exact' no slower than 'jax f32'; the last column is jax f32 / exact.
"""

from __future__ import annotations

import argparse
import time

import jax

from discrete_diffusion.sampling.categorical import categorical, categorical_probs


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
    print(f"device: {jax.devices()[0].device_kind}, batch rows: {args.batch}; ms per call")
    print(f"{'V':>7} {'exact':>8} {'exact probs':>12} {'exact dense':>12} {'jax f32':>8} "
          f"{'jax highest':>12} {'jax f32 / exact':>16}")
    for vocab in args.vocab:
        logits = jax.random.normal(jax.random.key(0), (args.batch, vocab)) * 3.0
        probs = jax.nn.softmax(logits)
        key = jax.random.key(1)
        exact = _time(jax.jit(categorical), key, logits, repeats=args.repeats)
        from_probs = _time(jax.jit(categorical_probs), key, probs, repeats=args.repeats)
        dense = _time(jax.jit(lambda k, x: categorical(k, x, method="exact_dense")), key, logits,
                      repeats=args.repeats)
        f32 = _time(jax.jit(jax.random.categorical), key, logits, repeats=args.repeats)
        highest = _time(jax.jit(lambda k, x: jax.random.categorical(k, x, mode="highest")),
                        key, logits, repeats=args.repeats)
        print(f"{vocab:>7} {exact:>8.2f} {from_probs:>12.2f} {dense:>12.2f} {f32:>8.2f} "
              f"{highest:>12.2f} {f32 / exact:>16.1f}", flush=True)


if __name__ == "__main__":
    main()
