"""The attention's query/key/value projection as one product with the whole [D, 3, H, Dh] kernel,
differentiated by `output_matmul`'s rule.

    q, k, v = qkv_projection(x, kernel, dtype, flat=False)
        [q k v][b, l, i, h, e] = sum_d x[b, l, d] W[d, i, h, e]      (i = 0, 1, 2; float32 sum)
    backward (G = [dq dk dv] as [T, 3, H, Dh], X = x as [T, D], T = B L):
        dx = G . W (over i, h, e),    dW = (X^T) G    with X^T written once (`output_matmul`)

By default the kernel keeps its four axes: under tensor parallelism its head axis H is sharded
(`sharding.py`), and a reshape to [D, 3 H Dh] would merge that axis with the 3, which XLA can
only do by gathering the kernel and q, k, v across devices
(`tests/test_models_qkv_projection.py::test_tensor_parallel_attention_gathers_nothing`).
`flat=True` makes the product with the kernel reshaped to [D, 3 H Dh] (a free reshape of the
same parameter): XLA then reads W for dx in place instead of copying it transposed, one
kernel-sized copy per layer less (0.17 GB per step of the 12-layer d = 768 model). `get_model`
sets it when `config.mesh.tensor` is 1 (no heads to keep apart); parameters are the same.

Two other forms compute the same numbers. What XLA:CPU makes of them, in one attention layer
(B = 2, L = 1024, D = 768, H = 12), forward and backward, with XLA's bytes accessed
(`benchmarks/attention_projections.py`, 2-core Xeon):
- three products with the kernel's slices x W[:, i] (the form before this module): XLA copies
  each slice into a contiguous [D, H Dh] array forward and again, transposed, backward, and pads
  and adds the three slices of dW back into [D, 3, H, Dh]; with `out` as nn.DenseGeneral,
  10 kernel-sized copies per layer, 1.245 GB;
- one product sliced afterwards, differentiated by autodiff: 1.328 GB (the cotangent's pads,
  a transposed product);
- this form, with `out` as `output_matmul` too (`layers.Attention`): one kernel-sized copy
  (W^T for dx, the product over three axes), 1.152 GB. Flattening the kernel to [D, 3 H Dh]
  would save that copy (1.138 GB) at the cost of the gathers above.

The arithmetic is the product's: x and W in `dtype` (`nn.DenseGeneral`'s promotion), each output
element summed in float32 over d and rounded to `dtype`, so values equal the sliced products'
up to the order of the float32 sums (`tests/test_models_qkv_projection.py`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion.models.output_matmul import output_matmul

Array = jax.Array


def qkv_projection(x: Array, kernel: Array, dtype: Any = None,
                   flat: bool = False) -> tuple[Array, Array, Array]:
    """q, k, v `[B, L, H, Dh]` in `dtype` (default: x's) of x `[B, L, D]` and the attention's
    `qkv/kernel` `[D, 3, H, Dh]` (module doc for the product and its backward pass; `flat`: the
    product with the kernel as [D, 3 H Dh], for meshes without a 'tensor' axis)."""
    dtype = x.dtype if dtype is None else dtype
    D, three, H, Dh = kernel.shape
    if three != 3 or x.shape[-1] != D:
        raise ValueError(f"qkv_projection: x {x.shape} and kernel {kernel.shape} are not "
                         f"[..., D] and [D, 3, H, Dh]")
    x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
    if flat:  # one [D, 3 H Dh] product: W read in place for dx (no heads sharded to keep apart)
        y = output_matmul(x, kernel.reshape(D, three * H * Dh)).astype(dtype)
        y = y.reshape(*y.shape[:-1], three, H, Dh)  # [B, L, 3, H, Dh]
    else:
        # The kernel keeps its [D, 3, H, Dh] axes (no reshape to [D, 3 H Dh]): under tensor
        # parallelism H is sharded (sharding.py); merging it with the 3 would make XLA gather it.
        y = output_matmul(x, kernel).astype(dtype)  # [B, L, 3, H, Dh]
    return y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]
