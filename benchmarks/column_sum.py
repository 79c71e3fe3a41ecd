"""XLA:CPU's column sum (the gradient of a bias) against the same sum as a matrix-vector product,
by row width, in one process (`models/output_bias.py` chose the product for the output layer).

    JAX_PLATFORMS=cpu python benchmarks/column_sum.py [--rows 2048] [--widths 256,8192,...]

Per width K: the jitted x.sum(0) over a float32 [rows, K] array and jnp.ones(rows) @ x, each the
median of --reps calls, in ms and GB/s of the array read, and their ratio.

With --output_layer D,K it then times, alternating in the same process, the gradient step of an
output layer alone (logits = h W + b over --rows positions, mean cross-entropy, gradients of W, b
and h) with flax's nn.Dense (the bias gradient a column sum) and with the library's
`layers.OutputDense` (`models/output_bias.py`: 1^T G), and prints both medians and their ratio.
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
    p.add_argument("--output_layer", default="", help="D,K: also time an output layer's step")
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
    if a.output_layer:
        d, k = (int(v) for v in a.output_layer.split(","))
        output_layer(a.rows, d, k, a.reps)


def output_layer(rows: int, d: int, k: int, reps: int) -> None:
    """nn.Dense against layers.OutputDense in an output layer's gradient step, alternating."""
    import flax.linen as nn

    from discrete_diffusion.models import layers

    kh, ky, kp = jax.random.split(jax.random.key(1), 3)
    h = jax.random.normal(kh, (rows, d), jnp.float32)
    y = jax.random.randint(ky, (rows,), 0, k)
    modules = {"nn.Dense": nn.Dense(k, dot_general=layers._f32_dot_general),
               "OutputDense": layers.OutputDense(k)}
    params = jax.tree.map(lambda x: 0.02 * jax.random.normal(kp, x.shape, x.dtype),
                          modules["OutputDense"].init(kp, h))

    def step_of(module):
        def loss(p, h):
            logits = module.apply(p, h)
            return jnp.mean(jax.nn.logsumexp(logits, -1)
                            - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    steps = {name: step_of(m) for name, m in modules.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for f in steps.values():  # compile
        jax.block_until_ready(f(params, h))
    for _ in range(reps):
        for name, f in steps.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(params, h))
            times[name].append(time.perf_counter() - t0)
    med = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    print(f"output layer [{rows}, {d}] x [{d}, {k}], loss and gradients, alternating "
          f"(median of {reps}): nn.Dense {med['nn.Dense']:.0f} ms, OutputDense "
          f"{med['OutputDense']:.0f} ms, ratio {med['nn.Dense'] / med['OutputDense']:.2f}x; "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
