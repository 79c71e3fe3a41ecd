"""The output layer and its cross-entropy, forward and backward: `log_prob.log_softmax_at` against
the gather of jax.nn.log_softmax (what autodiff gets from `take_along_axis`), and with the
product h W as `models.output_matmul.output_matmul` (what `layers.OutputDense` runs).

    python benchmarks/log_prob.py [--batch 2] [--seq_len 1024] [--d 768] [--vocab 50257] [--runs 9]

The program: logits = h W ([B, L, d] x [d, K]; lax.dot_general, or output_matmul in the third
version), loss = sum_l w_l (-log softmax(logits_l)[x_l])
with random labels x and weights w, and its gradient with respect to W and h. Both versions are
compiled; printed per version: XLA's bytes accessed, the median time over --runs rounds that run
each version once (alternating, in this process), its ratio to the reference, and whether the
loss is the reference's bit for bit, with the largest gradient difference.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from alternating import max_difference, median_times  # noqa: E402

from discrete_diffusion.log_prob import log_softmax_at  # noqa: E402
from discrete_diffusion.models.output_matmul import output_matmul  # noqa: E402


def reference(logits, index):
    """The gather of jax.nn.log_softmax."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), index[..., None], axis=-1)[
        ..., 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    B, L, D, K = args.batch, args.seq_len, args.d, args.vocab
    h = jnp.asarray(rng.standard_normal((B, L, D)), jnp.float32)
    w = jnp.asarray(0.02 * rng.standard_normal((D, K)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, K, (B, L)), jnp.int32)
    weights = jnp.asarray(rng.uniform(0.0, 2.0, (B, L)), jnp.float32)

    def product(h, w):
        return jax.lax.dot_general(h, w, (((2,), (0,)), ((), ())),
                                   preferred_element_type=jnp.float32)

    def program(log_prob, matmul=product):
        def loss(w, h):
            logits = matmul(h, w)
            return jnp.sum(weights * -log_prob(logits, labels))
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(w, h).compile()

    versions = {"gather of log_softmax": program(reference),
                "log_softmax_at": program(log_softmax_at),
                "+ output_matmul": program(log_softmax_at, output_matmul)}
    outs = {name: c(w, h) for name, c in versions.items()}
    medians = median_times(versions, (w, h), args.runs)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; h [{B}, {L}, {D}], "
          f"K = {K}; median of {args.runs} alternating runs; load average "
          f"{os.getloadavg()[0]:.2f}")
    ref_name = "gather of log_softmax"
    base = medians[ref_name]
    for name, compiled in versions.items():
        t = medians[name]
        (loss, grads), (loss0, grads0) = outs[name], outs[ref_name]
        diff = max_difference(grads, grads0)
        print(f"  {name:22s} {compiled.cost_analysis()['bytes accessed'] / 1e9:6.2f} GB "
              f"{1e3 * t:8.0f} ms  {t / base:5.2f}x  loss equal: {bool(loss == loss0)}  "
              f"max |grad diff| {diff:.1e}")


if __name__ == "__main__":
    main()
