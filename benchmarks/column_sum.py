"""XLA:CPU's column sum (the gradient of a bias) against the same sum as a matrix-vector product,
by row width, in one process (`models/output_bias.py` chose the product for the output layer).

    JAX_PLATFORMS=cpu python benchmarks/column_sum.py [--rows 2048] [--widths 256,8192,...]

Per width K: the jitted x.sum(0) over a float32 [rows, K] array and jnp.ones(rows) @ x, each the
median of --reps calls, in ms and GB/s of the array read, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


def millis(fn, x, reps: int) -> float:
    f = jax.jit(fn)
    jax.block_until_ready(f(x))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--widths", default="256,3072,8192,16384,32768,50257")
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{jax.devices()[0].platform}; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ones = jnp.ones((a.rows,), jnp.float32)
    for k in (int(w) for w in a.widths.split(",")):
        x = jax.random.normal(jax.random.key(0), (a.rows, k), jnp.float32)
        reduce_ms = millis(lambda x: x.sum(0), x, a.reps)
        matvec_ms = millis(lambda x: jnp.matmul(ones, x, precision=jax.lax.Precision.HIGHEST),
                           x, a.reps)
        gb = x.nbytes / 1e9
        print(f"[{a.rows}, {k:6d}]  sum(0) {reduce_ms:8.2f} ms ({gb / reduce_ms * 1e3:5.1f} GB/s)  "
              f"1^T x {matvec_ms:7.2f} ms ({gb / matvec_ms * 1e3:5.1f} GB/s)  "
              f"ratio {reduce_ms / matvec_ms:5.1f}x")


if __name__ == "__main__":
    main()
