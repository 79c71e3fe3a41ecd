"""Building blocks of the diffusion transformer (DiT): rotary attention, adaLN, timestep embedding.

Conventions: B batch, L sequence length, D model width, H heads, Dh = D / H head width,
C conditioning width. The conditioning tensor `cond` is `[B, Lc, C]` with Lc = 1 (one time per
sequence, broadcast over positions) or Lc = L (one time per position); every adaLN modulation
is computed from it, so blocks are modulated per token.

Precision: matmuls run in `dtype` (e.g. bfloat16); LayerNorm, the residual stream, the attention
softmax and the rotary angles are float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from discrete_diffusion.models.attention import dot_product_attention
from discrete_diffusion.models.dropout import Dropout
from discrete_diffusion.models.output_bias import add_bias
from discrete_diffusion.models.output_matmul import output_matmul
from discrete_diffusion.models.qkv_projection import qkv_projection

Array = jax.Array
Dtype = Any

# Initialiser of the adaLN-zero projections: every shift/scale/gate starts at 0, so each block
# starts as the identity and the final layer as a plain LayerNorm (DiT, MDLM, Duo).
zeros_init = nn.initializers.zeros_init()
embed_init = nn.initializers.normal(stddev=0.02)
# Matmul with float32 accumulation and output whatever the operand dtype (for the logits).
_f32_dot_general = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
    """Transformer-style sinusoidal features of a (scaled) time: `[...]` -> `[..., dim]` float32.

    Frequencies are geometric from 1 down to 1 / max_period; output is [cos(t f), sin(t f)].
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)  # [half]
    args = jnp.asarray(t, jnp.float32)[..., None] * freqs  # [..., half]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[..., :1])], axis=-1)
    return emb


def rotary_table(length: int, head_dim: int, base: float = 10_000.0) -> tuple[Array, Array]:
    """(cos, sin) `[length, head_dim / 2]` float32 of the angles l * base^(-2i/Dh), evaluated when
    the program is traced (`jax.ensure_compile_time_eval`), so that the program holds them as
    constants. Computed inside the program, XLA:CPU fused the sine and cosine into every loop
    that applies the rotation (the forward's q and k, the backward's assembly of the qkv
    cotangent), evaluating them once per element of [B, L, H, Dh] rather than of [L, Dh/2]."""
    half = head_dim // 2
    with jax.ensure_compile_time_eval():
        inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [Dh/2]
        angles = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq  # [L, Dh/2]
        return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: Array, base: float = 10_000.0) -> Array:
    """Rotary position embedding (rotate-half form) of queries or keys.

    x: `[B, L, H, Dh]` with Dh even; position l rotates the feature pair (i, i + Dh/2) by the angle
    l * base^(-2i/Dh). Angles are computed in float32; the result has x's dtype. The dot product
    of a rotated query at l and a rotated key at m depends on positions only through l - m.
    """
    L, Dh = x.shape[1], x.shape[-1]
    cos, sin = rotary_table(L, Dh, base)  # [L, Dh/2] each
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # [1, L, 1, Dh/2]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)  # [B, L, H, Dh/2] each
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def modulate(x: Array, shift: Array, scale: Array) -> Array:
    """adaLN modulation x * (1 + scale) + shift; shift/scale `[B, Lc, D]` broadcast over L."""
    return x * (1.0 + scale) + shift


class TimestepEmbedder(nn.Module):
    """t `[B, Lc]` -> conditioning `[B, Lc, C]`: sinusoidal(time_scale * t), then a 2-layer MLP.

    Params: `fc1` [freq_dim, C], `fc2` [C, C] (kernels and biases).
    """

    cond_dim: int
    freq_dim: int = 256
    time_scale: float = 1000.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t: Array) -> Array:
        h = sinusoidal_embedding(self.time_scale * t, self.freq_dim)  # [B, Lc, F]
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=embed_init)
        h = nn.Dense(self.cond_dim, name="fc1", **dense)(h)
        h = nn.silu(h)
        return nn.Dense(self.cond_dim, name="fc2", **dense)(h)  # [B, Lc, C]


def _dense_params(dense: nn.Module, example: Array) -> dict:
    """The parameters of a Flax dense layer whose product the caller computes itself: at
    initialisation they are created by calling the layer on `example` (a slice of the input,
    e.g. one position), so names, shapes and initialisers stay the layer's own."""
    if dense.is_initializing():
        dense(example)
    return dense.variables["params"]


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions; bidirectional, or causal if `causal`.

    Params: `qkv/kernel` [D, 3, H, Dh] and `out/kernel` [H, Dh, D] (no biases, as in MDLM's DiT).
    Softmax in float32 (`attention.dot_product_attention`); `attention_impl` None (by platform and
    length, `attention.auto_implementation`), 'matmul' (two einsums, `attention.matmul_attention`),
    'xla' or 'cudnn' (jax.nn.dot_product_attention's paths), or
    'blockwise' (`attention.blockwise_attention`: online softmax over key blocks, no
    [B, H, L, L] probabilities kept for the backward pass)."""

    num_heads: int
    causal: bool = False
    rotary_base: float = 10_000.0
    attention_impl: str | None = None
    attention_block: int = 512  # 'blockwise': queries and keys per block
    qkv_flat: bool = False  # qkv_projection(flat=...): only where no mesh axis splits the heads
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @staticmethod
    def _core(q: Array, k: Array, v: Array, causal: bool, impl: str | None,
              block: int = 512) -> Array:
        return dot_product_attention(q, k, v, causal=causal, implementation=impl, block=block)

    def _qkv(self, qkv: nn.DenseGeneral, x: Array) -> tuple[Array, Array, Array]:
        """q, k, v `[B, L, H, Dh]` of x `[B, L, D]` with the `qkv` kernel [D, 3, H, Dh]
        (`qkv_projection`: one product with the whole kernel, no copies of its slices)."""
        kernel = _dense_params(qkv, x[:, :1])["kernel"]  # [D, 3, H, Dh]
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        return qkv_projection(x, kernel, flat=self.qkv_flat)

    def _out(self, out: nn.DenseGeneral, h: Array) -> Array:
        """h `[B, L, H, Dh]` times the `out` kernel [H, Dh, D] as `[B, L, H Dh] x [H Dh, D]`
        (`output_matmul`: its gradient from h^T; as `nn.DenseGeneral` over two axes, XLA:CPU
        copied the kernel transposed and transposed its gradient)."""
        kernel = _dense_params(out, h[:, :1])["kernel"]  # [H, Dh, D]
        h, kernel = nn.dtypes.promote_dtype(h, kernel, dtype=self.dtype)
        H, Dh, D = kernel.shape
        y = output_matmul(h.reshape(*h.shape[:-2], H * Dh), kernel.reshape(H * Dh, D))
        return y.astype(h.dtype)  # [B, L, D]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        D = x.shape[-1]
        H, Dh = self.num_heads, D // self.num_heads
        dense = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        q, k, v = self._qkv(nn.DenseGeneral((3, H, Dh), name="qkv", **dense), x)
        q = apply_rotary(q, self.rotary_base)
        k = apply_rotary(k, self.rotary_base)
        h = self._core(q, k, v, self.causal, self.attention_impl,
                       self.attention_block)  # [B, L, H, Dh]
        return self._out(nn.DenseGeneral(D, axis=(-2, -1), name="out", **dense), h)  # [B, L, D]


class Mlp(nn.Module):
    """Position-wise MLP D -> ratio*D -> D with tanh-GELU. Params: `fc1`, `fc2` (with biases)."""

    mlp_ratio: int = 4
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _fc1(self, fc1: nn.Dense, x: Array) -> Array:
        """fc1(x) with nn.Dense's parameters and arithmetic; the product is `output_matmul`,
        whose kernel gradient transposes x `[T, D]` where XLA:CPU transposed the 4x wider
        cotangent `[T, ratio*D]` (`benchmarks/attention_projections.py --layer=mlp`)."""
        params = _dense_params(fc1, x[..., :1, :])
        x, kernel, bias = promote_dtype(x, params["kernel"], params["bias"], dtype=self.dtype)
        return output_matmul(x, kernel).astype(x.dtype) + bias

    @nn.compact
    def __call__(self, x: Array) -> Array:
        D = x.shape[-1]
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = self._fc1(nn.Dense(self.mlp_ratio * D, name="fc1", **dense), x)  # [B, L, ratio*D]
        h = nn.gelu(h, approximate=True)
        return nn.Dense(D, name="fc2", **dense)(h)  # [B, L, D]


def _layer_norm(name: str, param_dtype: Dtype) -> nn.LayerNorm:
    """Scale-only LayerNorm computed and returned in float32 (the adaLN shift replaces the bias)."""
    return nn.LayerNorm(
        epsilon=1e-5, use_bias=False, dtype=jnp.float32, param_dtype=param_dtype, name=name
    )


class DiTBlock(nn.Module):
    """Pre-LayerNorm transformer block with adaLN-zero modulation from `cond`.

        shift1, scale1, gate1, shift2, scale2, gate2 = adaln(cond)            # [B, Lc, D] each
        x = x + gate1 * dropout(attn(modulate(norm1(x), shift1, scale1)))
        x = x + gate2 * dropout(mlp(modulate(norm2(x), shift2, scale2)))

    `cond` is the already SiLU-activated conditioning `[B, Lc, C]`. Params: `norm1/scale`,
    `norm2/scale` [D], `adaln/kernel` [C, 6D] + `adaln/bias` [6D] (zero-init), `attn/...`,
    `mlp/...`.
    """

    num_heads: int
    mlp_ratio: int = 4
    dropout: float = 0.0
    causal: bool = False
    rotary_base: float = 10_000.0
    attention_impl: str | None = None
    attention_block: int = 512
    qkv_flat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, cond: Array, deterministic: bool) -> Array:
        D = x.shape[-1]
        mod = nn.Dense(
            6 * D,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=zeros_init,
            name="adaln",
        )(cond)  # [B, Lc, 6D]
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)

        h = modulate(_layer_norm("norm1", self.param_dtype)(x), shift1, scale1)
        h = Attention(
            self.num_heads,
            causal=self.causal,
            rotary_base=self.rotary_base,
            attention_impl=self.attention_impl,
            attention_block=self.attention_block,
            qkv_flat=self.qkv_flat,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attn",
        )(h)
        h = Dropout(self.dropout, deterministic=deterministic)(h)
        x = x + gate1 * h  # residual stream stays float32

        h = modulate(_layer_norm("norm2", self.param_dtype)(x), shift2, scale2)
        h = Mlp(self.mlp_ratio, dtype=self.dtype, param_dtype=self.param_dtype, name="mlp")(h)
        h = Dropout(self.dropout, deterministic=deterministic)(h)
        return x + gate2 * h  # [B, L, D] float32


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then an (untied) projection to `num_classes` float32 logits.

    The projection takes `dtype` inputs but accumulates and returns float32. Params: `norm/scale`
    [D], `adaln/kernel` [C, 2D] + bias (zero-init), `out/kernel` [D, K] + `out/bias` [K] (zero-init,
    so the untrained model predicts the uniform distribution).
    """

    num_classes: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, cond: Array, return_hidden: bool = False) -> Array:
        """Logits `[B, L, K]`, or with `return_hidden` the input of the projection `[B, L, D]`
        (float32), so that `output_projection(params['out'], h, dtype)` gives the same logits."""
        D = x.shape[-1]
        mod = nn.Dense(
            2 * D,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=zeros_init,
            name="adaln",
        )(cond)  # [B, Lc, 2D]
        shift, scale = jnp.split(mod, 2, axis=-1)
        h = modulate(_layer_norm("norm", self.param_dtype)(x), shift, scale)  # [B, L, D]
        out = _output_dense(self.num_classes, self.dtype, self.param_dtype)
        if return_hidden:
            if self.is_initializing():
                out(h[..., :1, :])  # create final/out's parameters
            return h.astype(jnp.float32)
        return out(h).astype(jnp.float32)  # [B, L, K]


class OutputDense(nn.Module):
    """nn.Dense's arithmetic and parameters (`kernel` [D, K], `bias` [K], zero-init; inputs,
    kernel and bias promoted to `dtype`; float32 accumulation) with the bias added by
    `output_bias.add_bias`, whose gradient is a matrix-vector product: XLA:CPU's column sum over
    a wide [T, K] cotangent is 35-58x slower at K = 50257 (that module's doc); the product h W is
    `output_matmul.output_matmul`, whose kernel gradient transposes h, not the [T, K] cotangent."""

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        kernel = self.param("kernel", zeros_init, (jnp.shape(inputs)[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", zeros_init, (self.features,), self.param_dtype)
        inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = output_matmul(inputs, kernel)  # float32 [..., K]
        return add_bias(y, bias)


def _output_dense(num_classes: int, dtype: Dtype, param_dtype: Dtype, **kwargs: Any) -> nn.Module:
    """The final projection `out` (zero-init kernel and bias, float32 accumulation)."""
    return OutputDense(num_classes, dtype=dtype, param_dtype=param_dtype, name="out", **kwargs)


def output_projection(out_params: dict, h: Array, dtype: Dtype = jnp.float32) -> Array:
    """logits = h W + b, float32 `[..., K]`: FinalLayer's `out` projection applied outside the
    network, to the hidden states `h` `[..., D]` that `FinalLayer(return_hidden=True)` returns.

    `out_params` = {'kernel': W [D, K], 'bias': b [K]} (the network's `final/out`); `dtype` is
    the network's compute dtype. Same arithmetic as the projection inside the network, so
    `output_projection(p['final']['out'], h)` equals the logits row for row.
    """
    kernel = out_params["kernel"]
    dense = _output_dense(kernel.shape[-1], dtype, kernel.dtype, parent=None)  # a module of its own
    return dense.apply({"params": out_params}, h).astype(jnp.float32)
