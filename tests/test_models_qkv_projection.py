"""models/qkv_projection.py and the attention's `out` product: values and gradients equal the
per-slice products' (nn.DenseGeneral's arithmetic, what the network ran before) up to float32
summation order, in float32 and bfloat16; and the compiled backward pass copies no kernel-sized
array (the reason for the module)."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models.attention import dot_product_attention
from discrete_diffusion.models.layers import Attention, apply_rotary
from discrete_diffusion.models.qkv_projection import qkv_projection


def _sliced(x, kernel, dtype):
    """The three products with the kernel's slices, as autodiff sees them."""
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    return tuple(jnp.einsum("bld,dhk->blhk", x, kernel[:, i]) for i in range(3))


def _case(b, l, d, h, e, seed=0):
    kx, kw = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(kx, (b, l, d)),
            jax.random.normal(kw, (d, 3, h, e)) / np.sqrt(d))


def _loss(fn, dtype):
    """A scalar that weighs q, k and v differently (so a mix-up of the three would show)."""
    def loss(x, kernel):
        return sum(jnp.sum(jnp.sin((i + 1.0) * y.astype(jnp.float32)))
                   for i, y in enumerate(fn(x, kernel, dtype)))
    return loss


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-6), (jnp.bfloat16, 2e-2)])
def test_values_and_gradients_equal_the_sliced_products(dtype, tol):
    x, kernel = _case(4, 8, 16, 3, 5)
    ours, ref = jax.jit(qkv_projection, static_argnums=2)(x, kernel, dtype), _sliced(x, kernel,
                                                                                      dtype)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape == (4, 8, 3, 5) and a.dtype == b.dtype == dtype
        np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=tol, atol=tol)
    g_ours = jax.jit(jax.grad(_loss(qkv_projection, dtype), argnums=(0, 1)))(x, kernel)
    g_ref = jax.jit(jax.grad(_loss(_sliced, dtype), argnums=(0, 1)))(x, kernel)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert a.dtype == b.dtype == jnp.float32  # the primals' dtype
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=tol * scale)


def test_bad_shapes_raise():
    x, kernel = _case(1, 2, 16, 3, 5)
    with pytest.raises(ValueError, match=r"\[D, 3, H, Dh\]"):
        qkv_projection(x, kernel[:, :2])
    with pytest.raises(ValueError, match=r"\[\.\.\., D\]"):
        qkv_projection(x[..., :15], kernel)


def _dense_general_attention(params, x, heads):
    """The attention as written before: sliced qkv products and nn.DenseGeneral's `out`."""
    q, k, v = _sliced(x, params["qkv"]["kernel"], jnp.float32)
    h = dot_product_attention(apply_rotary(q), apply_rotary(k), v, causal=False,
                              implementation="matmul")
    out = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), use_bias=False)
    return out.apply({"params": params["out"]}, h)


@pytest.mark.parametrize("qkv_flat", [False, True])
def test_attention_equals_the_dense_general_form(qkv_flat):
    x = jax.random.normal(jax.random.key(0), (2, 16, 32))
    attn = Attention(num_heads=4, attention_impl="matmul", qkv_flat=qkv_flat)
    params = attn.init(jax.random.key(1), x)["params"]
    assert jax.tree.map(jnp.shape, params) == {"qkv": {"kernel": (32, 3, 4, 8)},
                                               "out": {"kernel": (4, 8, 32)}}
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape),
                          params)

    def loss(fn):
        return lambda p, x: jnp.sum(jnp.sin(fn(p, x)))
    ours = jax.jit(jax.value_and_grad(loss(lambda p, x: attn.apply({"params": p}, x)),
                                      argnums=(0, 1)))(params, x)
    ref = jax.jit(jax.value_and_grad(loss(lambda p, x: _dense_general_attention(p, x, 4)),
                                     argnums=(0, 1)))(params, x)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def _kernel_sized_copies(fn, x, kernel):
    """Instructions of the compiled forward and backward pass, other than parameters, bitcasts
    and products, that write an array of the kernel's size (a copy of the kernel, a slice of it
    or of its gradient, or a pad of one)."""
    text = jax.jit(jax.grad(_loss(fn, jnp.float32), argnums=(0, 1))).lower(
        x, kernel).compile().as_text()
    entry = text[text.index("ENTRY"):]
    d, _, h, e = kernel.shape
    sizes = {d * h * e, 3 * d * h * e}
    found = []
    for line in entry.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = f32\[([\d,]*)\]\S* (\S+?)\(", line)
        if not m or m.group(3) in ("parameter", "bitcast", "dot"):
            continue
        n = int(np.prod([int(s) for s in m.group(2).split(",") if s]))
        if n in sizes and "ynn" not in m.group(1) and "dot" not in m.group(1):
            found.append(m.group(1))
    return found


def _one_product(x, kernel, dtype):
    """One product with the whole kernel, sliced afterwards, under autodiff."""
    d, _, h, e = kernel.shape
    y = jnp.einsum("bld,dn->bln", x, kernel.reshape(d, 3 * h * e)).reshape(*x.shape[:-1], 3, h, e)
    return y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]


def _bytes(fn, x, kernel):
    return jax.jit(jax.grad(_loss(fn, jnp.float32), argnums=(0, 1))).lower(
        x, kernel).compile().cost_analysis()["bytes accessed"]


def test_backward_pass_copies_the_kernel_at_most_once_and_moves_fewer_bytes():
    """The sliced products copy the kernel's slices forward and backward and pad the gradient
    back together; here at most one copy is left (XLA:CPU writes W^T [3 H Dh, D] for dx, the
    product over the kernel's three output axes, which stay unmerged for tensor parallelism),
    and fewer bytes move than with either other form."""
    x, kernel = _case(2, 128, 96, 4, 24)
    sliced = _kernel_sized_copies(_sliced, x, kernel)
    ours = _kernel_sized_copies(qkv_projection, x, kernel)
    assert len(ours) <= 1 < len(sliced), (ours, sliced)
    ours = _bytes(qkv_projection, x, kernel)
    assert ours < _bytes(_sliced, x, kernel) and ours < _bytes(_one_product, x, kernel)


def _flat(x, kernel, dtype):
    return qkv_projection(x, kernel, dtype, flat=True)


def test_flat_product_equals_the_four_axis_one_and_copies_no_kernel():
    """flat=True (the kernel as [D, 3 H Dh], for meshes without a 'tensor' axis): values and
    gradients of the four-axis product to float32 rounding, no kernel-sized copy left (W is read
    in place for dx) and fewer bytes."""
    x, kernel = _case(2, 128, 96, 4, 24)
    for a, b in zip(jax.jit(_flat, static_argnums=2)(x, kernel, jnp.float32),
                    jax.jit(qkv_projection, static_argnums=2)(x, kernel, jnp.float32),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    grads = [jax.jit(jax.grad(_loss(fn, jnp.float32), argnums=(0, 1)))(x, kernel)
             for fn in (_flat, qkv_projection)]
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                   atol=1e-5 * float(jnp.max(jnp.abs(b))))
    assert _kernel_sized_copies(_flat, x, kernel) == []
    assert len(_kernel_sized_copies(qkv_projection, x, kernel)) == 1
    assert _bytes(_flat, x, kernel) < _bytes(qkv_projection, x, kernel)


@pytest.mark.parametrize("mesh,flat", [(None, True), ({"data": -1}, True),
                                       ({"data": 1, "fsdp": 2, "tensor": 1}, True),
                                       ({"data": -1, "tensor": 2}, False),
                                       ({"data": 2, "tensor": -1}, False)])
def test_get_model_flattens_the_kernel_only_where_no_tensor_axis_splits_the_heads(mesh, flat):
    import ml_collections

    from configs import owt_absorbing
    from discrete_diffusion.models import get_model

    config = owt_absorbing.get_config()
    with config.unlocked():
        if mesh is None:
            del config["mesh"]
        else:
            config.mesh = ml_collections.ConfigDict(mesh)
    assert get_model(config, 17, 18).qkv_flat is flat


_TENSOR_PARALLEL_SCRIPT = """
import collections, json, re
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from discrete_diffusion import sharding
from discrete_diffusion.models.layers import Attention

mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(1, 1, 2), sharding.AXES)
x = jax.random.normal(jax.random.key(0), (2, 32, 64))
attn = Attention(num_heads=4, attention_impl="matmul")
params = attn.init(jax.random.key(1), x)["params"]
specs = sharding.param_specs({"blocks_0": {"attn": params}}, mesh=mesh)["blocks_0"]["attn"]
assert tuple(specs["qkv"]["kernel"])[2] == "tensor", specs
params = jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh, s)), params, specs)
x = jax.device_put(x, NamedSharding(mesh, P()))
grad = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(attn.apply({"params": p}, x))),
                        argnums=(0, 1)))
text = grad.lower(params, x).compile().as_text()
ops = re.findall(r"= \\S+ (all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)"
                 r"(?:-start)?\\(", text)
print(json.dumps(collections.Counter(ops)))
"""


def test_tensor_parallel_attention_gathers_nothing():
    """With the qkv kernel sharded over heads and `out` over its input heads (sharding.py's rules,
    a 'tensor' axis of 2 devices), the attention's forward and backward passes communicate only
    by the two all-reduces of Megatron-style attention (out's partial sums forward, the qkv
    product's dx backward): no all-gather of the kernel or of q, k, v. Reshaping the kernel to
    [D, 3 H Dh] merged the sharded head axis with the 3 and made XLA gather both."""
    import json

    from test_sharding import run_python

    res = run_python(_TENSOR_PARALLEL_SCRIPT, devices=2)
    ops = json.loads(res.stdout.strip().splitlines()[-1])
    assert ops == {"all-reduce": 2}, ops
