"""The gradient norm of the output layer's kernel: optax.tree.norm against
`training.global_norm.global_norm`, in a program that produces the gradient by a matmul.

    python benchmarks/global_norm.py [--d 768] [--vocab 50257] [--rows 2048] [--runs 3]
        [--transposed]

The program is one step of the output layer alone: logits = h W ([rows, d] x [d, vocab]), the
gradient of the mean log-likelihood of random labels with respect to W, its norm n, and
W - 0.1 g / n (so the gradient and the norm are both used, as in the train step). Both versions
are compiled, checked against the float64 norm, and timed alternately in this process (median
of --runs). Printed per version: ms per program, the ratio to optax's, the relative error, and
whether the compiled program holds a reduce-window that tiles two dimensions with padding (the
reduction XLA:CPU runs slowly; training/global_norm.py). --transposed uses W as [vocab, d]
(the embedding's orientation) instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from alternating import median_times  # noqa: E402

from discrete_diffusion.training.global_norm import global_norm  # noqa: E402


def padded_tiles(hlo: str) -> int:
    """How many reduce-windows tile more than one dimension and pad (see the module doc)."""
    count = 0
    for line in hlo.splitlines():
        m = re.search(r"reduce-window\(.*window=\{size=([\dx]+)", line)
        if m and sum(int(s) > 1 for s in m.group(1).split("x")) > 1 and "pad=" in line:
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--transposed", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((args.rows, args.d)), jnp.float32)
    shape = (args.vocab, args.d) if args.transposed else (args.d, args.vocab)
    w = jnp.asarray(0.02 * rng.standard_normal(shape), jnp.float32)
    labels = jnp.asarray(rng.integers(0, args.vocab, (args.rows,)), jnp.int32)

    def loss(w, h):
        kernel = w.T if args.transposed else w
        log_p = jax.nn.log_softmax(h @ kernel)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], 1))

    def program(norm_fn):
        def step(w, h):
            g = jax.grad(loss)(w, h)
            n = norm_fn(g)
            return w - 0.1 * g / n, n
        return jax.jit(step).lower(w, h).compile()

    versions = {"optax.tree.norm": program(optax.tree.norm), "global_norm": program(global_norm)}
    g = jax.jit(jax.grad(loss))(w, h)
    exact = float(np.sqrt(np.sum(np.asarray(g, np.float64) ** 2)))
    medians = median_times(versions, (w, h), args.runs)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; W {list(shape)}, h "
          f"[{args.rows}, {args.d}]; median of {args.runs} alternating runs; load average "
          f"{os.getloadavg()[0]:.2f}")
    base = medians["optax.tree.norm"]
    for name, compiled in versions.items():
        t = medians[name]
        err = abs(float(compiled(w, h)[1]) - exact) / exact
        print(f"  {name:16s} {1e3 * t:8.0f} ms  {t / base:5.2f}x  rel. error {err:.1e}  "
              f"padded 2-D tile reductions: {padded_tiles(compiled.as_text())}")


if __name__ == "__main__":
    main()
