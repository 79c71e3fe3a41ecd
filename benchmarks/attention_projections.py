"""One attention layer, forward and backward, with three forms of its projections: what the
network ran before (three products with the qkv kernel's slices, nn.DenseGeneral's `out`), one
qkv product sliced afterwards under autodiff, and the network's now (`qkv_projection` and
`output_matmul` for `out`, `layers.Attention`), and the same with `qkv_flat=True` (the kernel as
[D, 3 H Dh], what `get_model` builds without a 'tensor' mesh axis). With --layer=mlp, the MLP
block with `fc1` as nn.Dense (before) and as `layers.Mlp` runs it now (`output_matmul`).

    python benchmarks/attention_projections.py [--layer attention|mlp] [--batch 2] \\
        [--seq_len 1024] [--d 768] [--heads 12] [--runs 9]

Printed per form: XLA's bytes accessed, the instructions that write a kernel-sized array other
than products (copies of the kernel, its slices or its gradient's), the median time over --runs
rounds that run each form once (alternating, in this process), its ratio to the first form, and
the largest difference of the loss and gradients from the first form's.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from alternating import compare_gradients  # noqa: E402
from train_throughput import machine_line  # noqa: E402

from discrete_diffusion.models.layers import Attention, Mlp  # noqa: E402


def sliced_qkv(x, kernel, dtype=None):
    """Three products with the kernel's slices (the form before `qkv_projection`)."""
    return tuple(jnp.einsum("bld,dhk->blhk", x, kernel[:, i]) for i in range(3))


def one_product_qkv(x, kernel, dtype=None):
    """One product with the whole kernel, sliced afterwards; autodiff's backward pass."""
    d, _, h, e = kernel.shape
    y = jax.lax.dot_general(x, kernel.reshape(d, 3 * h * e), (((x.ndim - 1,), (0,)), ((), ())))
    y = y.reshape(*x.shape[:-1], 3, h, e)
    return y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]


def dense_general_out(h, kernel):
    """nn.DenseGeneral over (H, Dh), as `out` was before."""
    out = nn.DenseGeneral(kernel.shape[-1], axis=(-2, -1), use_bias=False, parent=None)
    return out.apply({"params": {"kernel": kernel}}, h)


class Variant(Attention):
    """`layers.Attention` with its two products replaced."""

    qkv_fn: object = None
    out_fn: object = None

    def _qkv(self, qkv, x):
        if self.is_initializing():
            qkv(x[:, :1])
        return self.qkv_fn(x, qkv.variables["params"]["kernel"])

    def _out(self, out, h):
        if self.is_initializing():
            out(h[:, :1])
        return self.out_fn(h, out.variables["params"]["kernel"])


class DenseMlp(Mlp):
    """`layers.Mlp` with `fc1` as nn.Dense (the form before `output_matmul`)."""

    def _fc1(self, fc1, x):
        return fc1(x)


def kernel_sized_writes(text: str, sizes: set[int]) -> list[str]:
    """Names of the entry's non-product instructions whose float32 output has a size in `sizes`."""
    entry = text[text.index("ENTRY"):]
    found = []
    for line in entry.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = f32\[([\d,]*)\]\S* (\S+?)\(", line)
        if not m or m.group(3) in ("parameter", "bitcast", "dot") or "ynn" in m.group(1):
            continue
        if int(np.prod([int(s) for s in m.group(2).split(",") if s])) in sizes:
            found.append(re.sub(r"\.\d+$", "", m.group(1)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", choices=["attention", "mlp"], default="attention")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    B, L, D, H = args.batch, args.seq_len, args.d, args.heads
    x = jax.random.normal(jax.random.key(0), (B, L, D))
    forms = {"sliced qkv, DenseGeneral out": Variant(num_heads=H, qkv_fn=sliced_qkv,
                                                     out_fn=dense_general_out),
             "one qkv product, autodiff": Variant(num_heads=H, qkv_fn=one_product_qkv,
                                                  out_fn=dense_general_out),
             "layers.Attention (now)": Attention(num_heads=H),
             "layers.Attention, qkv_flat": Attention(num_heads=H, qkv_flat=True)}
    if args.layer == "mlp":
        forms = {"fc1 as nn.Dense": DenseMlp(), "layers.Mlp (now)": Mlp()}
    params = next(iter(forms.values())).init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda p: p + 0.02 * jax.random.normal(jax.random.key(2), p.shape),
                          params)
    sizes = {D * D, 3 * D * D}
    losses = {name: (lambda p, x, module=module: jnp.sum(jnp.sin(module.apply({"params": p}, x))))
              for name, module in forms.items()}
    rows = compare_gradients(losses, (params, x), (0, 1), args.runs)
    print(f"jax {jax.__version__}; {args.layer}, x [{B}, {L}, {D}], H = {H}; median of {args.runs} "
          f"alternating runs; {machine_line()}")
    for row in rows:
        copies = kernel_sized_writes(row.compiled.as_text(), sizes)
        print(f"  {row.name:30s} {row.compiled.cost_analysis()['bytes accessed'] / 1e9:6.3f} GB "
              f"{1e3 * row.seconds:7.0f} ms  {row.ratio:5.2f}x  max |diff| {row.diff:.1e}  "
              f"kernel-sized writes: {len(copies)} {sorted(set(copies))}")

if __name__ == "__main__":
    main()
