"""The diffusion transformer (DiT of MDLM / Duo) and its causal twin, the autoregressive baseline.

`DiffusionTransformer(x_t, t)` maps noisy tokens `x_t` int32 `[B, L]` and a time `t` (`[B]` per
sequence, `[B, L]` per position, or a scalar) to float32 logits `[B, L, K]` over the K clean
classes:

    h    = token_embed(x_t)                                    [B, L, D]
         (+ noise_embed(u) + match_embed * 1[x_t == u])         if noise_input (uniform_absorbing)
    or, with soft inputs instead of x_t (Duo's curriculum; the same token_embed table E):
    h    = sum_j soft_weights[..., j] E[soft_ids[..., j]]       embedding bag, ids/weights [B, L, k]
    h    = soft_weights @ E                                     dense, soft_weights [B, L, V]
    h    = h + pos_embed[:L]                                    only if pos_embedding='rotary+learned'
    cond = silu(time_embed(t) + label_embed(y) + latent_embed(z))   [B, Lc, C], Lc = 1 or L
         (time_embed reads 1000 t, or sigma = -log alpha_t with time_input='sigma')
         (time term only if time_conditioning; label term only if num_labels > 0; latent term
         only if latent_dim > 0; 0 if none)
    h    = blocks_{num_layers-1}( ... blocks_0(h, cond))       pre-LN, rotary attention, adaLN-zero
    logits = final(h, cond)                                     adaLN LayerNorm + untied projection

Positions. By default (`pos_embedding='rotary'`) there are no absolute positions: positions
enter only through rotary embeddings, so the network is equivariant to shifts up to the ends of
the sequence and, at the all-masked state, every position gets the same prediction (so
one-step binarised-MNIST samples are pixel noise whatever the training). `pos_embedding=
'rotary+learned'` also adds a learned absolute table pos_embed `[max_len, D]` (normal, std 0.02)
to the input embedding (token ids or soft inputs) before the first block; max_len is the data's
seq_len (`get_model`; `max_len=None`: the length of the input at init), and an input of length
L <= max_len reads rows 0..L-1. Positions are those of the full input: `output_positions` gathers
after the blocks, and prompts are tokens of the full-length x_t, so both work unchanged. With
`time_conditioning=False` (MDLM, and the AR model) t is ignored and the adaLN projections see a
zero conditioning vector, so their biases act as learned per-block constants.

Parameter names (the tree under `params`; D = d_model, C = cond_dim, H = num_heads,
Dh = D // H, F = 256 sinusoidal features, V = input_vocab_size, K = num_classes):

    token_embed/embedding           [V, D]
    pos_embed                       [max_len, D]    only if pos_embedding='rotary+learned'
    noise_embed/embedding           [V, D]          only if noise_input
    match_embed                     [D]             only if noise_input
    time_embed/fc1/{kernel,bias}    [F, C], [C]     only if time_conditioning
    time_embed/fc2/{kernel,bias}    [C, C], [C]     only if time_conditioning
    label_embed/embedding           [num_labels + 1, C]   only if num_labels > 0
    latent_embed/fc1/{kernel,bias}  [Z, C], [C]     only if latent_dim = Z > 0
    latent_embed/fc2/{kernel,bias}  [C, C], [C]     only if latent_dim = Z > 0
    blocks_{i}/norm1/scale          [D]
    blocks_{i}/adaln/{kernel,bias}  [C, 6D], [6D]   (shift, scale, gate) x (attn, mlp); zero-init
    blocks_{i}/attn/qkv/kernel      [D, 3, H, Dh]
    blocks_{i}/attn/out/kernel      [H, Dh, D]
    blocks_{i}/norm2/scale          [D]
    blocks_{i}/mlp/fc1/{kernel,bias}  [D, 4D], [4D]
    blocks_{i}/mlp/fc2/{kernel,bias}  [4D, D], [D]
    final/norm/scale                [D]
    final/adaln/{kernel,bias}       [C, 2D], [2D]   zero-init
    final/out/{kernel,bias}         [D, K], [K]     zero-init

Latent conditioning (VADD, Xie et al. 2026; methods/vadd.py): with `latent_dim` = Z > 0 the
network takes a latent z `[B, Z]` (`latent=`) and latent_embed(z) = fc2(silu(fc1(z))) is added
to the conditioning vector beside the time (and label) embedding, so z reaches every block's
adaLN (before attention and before the MLP) and the final layer's. The paper's MLP of the
z-embedding per block is realised by each block's own adaLN projection of the shared
conditioning (a choice: the reference code could not be read). `latent_dim = 0` builds today's
network, parameter for parameter and bit for bit.

Sizes (`SIZES`): "small" (12 x 768, 12 heads, C=128) has ~170M parameters with K = 50257
(~92M in the blocks, ~77M in the untied input/output embeddings), as in the MDLM/Duo papers.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from discrete_diffusion.models import time_input as time_input_lib
from discrete_diffusion.models.embedding import Embed
from discrete_diffusion.models.layers import (
    DiTBlock,
    FinalLayer,
    TimestepEmbedder,
    embed_init,
    output_projection,
)
from discrete_diffusion.models.remat import remat_module

Array = jax.Array
Dtype = Any

# config.model.pos_embedding: 'rotary' (relative positions only; today's network, bit for bit)
# or 'rotary+learned' (also a learned absolute table added to the input embedding)
POS_EMBEDDINGS = ("rotary", "rotary+learned")

SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(num_layers=2, d_model=128, num_heads=4, cond_dim=64),
    "small": dict(num_layers=12, d_model=768, num_heads=12, cond_dim=128),
    "medium": dict(num_layers=24, d_model=1024, num_heads=16, cond_dim=128),
}


class LatentEmbedder(nn.Module):
    """z `[B, Z]` -> `[B, C]`: fc2(silu(fc1(z))), VADD's z-embedding. Params: `fc1` [Z, C],
    `fc2` [C, C] (kernels and biases)."""

    cond_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: Array) -> Array:
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=embed_init)
        h = nn.silu(nn.Dense(self.cond_dim, name="fc1", **dense)(z))
        return nn.Dense(self.cond_dim, name="fc2", **dense)(h)


def add_learned_positions(module: nn.Module, h: Array, max_len: int | None,
                          param_dtype: Dtype = jnp.float32) -> Array:
    """h `[B, L, D]` + the learned absolute table `pos_embed` `[max_len, D]` (a parameter of
    `module`, normal std 0.02; max_len None: L at init) at rows 0..L-1, float32."""
    length, width = h.shape[1], h.shape[2]
    if module.has_variable("params", "pos_embed"):
        table = module.get_variable("params", "pos_embed")
    else:
        table = module.param("pos_embed", embed_init, (max_len or length, width), param_dtype)
    rows = table.shape[0]
    if max_len is not None and rows != max_len:
        raise ValueError(f"pos_embed has {rows} rows but max_len={max_len} (the data's "
                         "seq_len): parameters of a network built for another sequence length")
    if length > rows:
        raise ValueError(f"sequence length {length} exceeds the {rows} rows of the learned "
                         "position table pos_embed (config.model.pos_embedding='rotary+learned' "
                         "is built for the data's seq_len)")
    return h.astype(jnp.float32) + table[:length].astype(jnp.float32)[None]


class DiffusionTransformer(nn.Module):
    """Bidirectional DiT with rotary attention and adaLN time/label conditioning (see module doc).

    Fields:
      num_classes: K, the width of the output logits (clean classes; never the mask token).
      input_vocab_size: number of input ids: K + 1 for masked diffusion (mask id K), K for uniform.
      num_layers, d_model, num_heads, cond_dim, mlp_ratio: architecture (defaults = "small").
      dropout: rate on the attention and MLP branches, active only when `train=True`.
      time_conditioning: condition on t through adaLN; if False t is ignored (may be None).
      causal: causal attention (the autoregressive baseline, see `AutoregressiveTransformer`).
      noise_input: also embed per-token noise ids u (the `uniform_absorbing` process).
      num_labels: number of classes for class conditioning; 0 = unconditional. The label table has
        num_labels + 1 rows; label id `num_labels` is the null label (classifier-free guidance).
      latent_dim: Z, the width of a latent z `[B, Z]` fed through adaLN (VADD); 0 = no latent.
      pos_embedding: 'rotary' (relative positions only) or 'rotary+learned' (also a learned
        absolute table pos_embed [max_len, D] added to the input embedding; module doc).
      max_len: rows of pos_embed (the data's seq_len); None = the input length at init. Only read
        with pos_embedding='rotary+learned'.
      time_scale: t is multiplied by this before the sinusoidal embedding (time_input 'scaled_t').
      time_input: 'scaled_t' (time_scale * t, the default) or 'sigma' (-log alpha_t of `schedule`,
        the reference DiTs' input; models/time_input.py).
      schedule: the process's noise schedule (a frozen `schedules` dataclass); read only by
        time_input='sigma' and scale_by_sigma.
      scale_by_sigma: SEDD's absorbing-graph score output: the logits minus
        log(e^sigma - 1) + log(V - 1), V = input_vocab_size (models/time_input.py eq. 1).
      rotary_base: base of the rotary frequencies.
      remat: rematerialise each block in the backward pass (saves activation memory; keeps only
        each block's input: `remat.remat_module`).
      attention_impl: None (the default: `attention.auto_implementation`, 'blockwise' on the CPU
        when L > attention_block, else 'matmul'), 'matmul' (`attention.matmul_attention`, two
        einsums and a float32 softmax), 'xla' or 'cudnn' (jax.nn.dot_product_attention's paths;
        'cudnn' on GPU), or 'blockwise' (models/attention.py: online softmax, no [B, H, L, L]
        kept).
      attention_block: queries and keys per block of 'blockwise' (512; also the length above
        which the default picks it on the CPU).
      dtype: compute dtype of the matmuls (float32 or bfloat16); LayerNorm, softmax, the residual
        stream and the logits are float32 regardless.
      param_dtype: dtype of the parameters (float32).
    """

    num_classes: int
    input_vocab_size: int
    num_layers: int = 12
    d_model: int = 768
    num_heads: int = 12
    cond_dim: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.1
    time_conditioning: bool = True
    causal: bool = False
    noise_input: bool = False
    num_labels: int = 0
    latent_dim: int = 0
    pos_embedding: str = "rotary"
    max_len: int | None = None
    time_scale: float = 1000.0
    time_input: str = "scaled_t"
    schedule: Any = None
    scale_by_sigma: bool = False
    rotary_base: float = 10_000.0
    remat: bool = False
    attention_impl: str | None = None
    attention_block: int = 512
    qkv_flat: bool = False  # layers.Attention: get_model sets it where config.mesh.tensor is 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _check_sizes(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} not divisible by num_heads={self.num_heads}")
        if (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"head dim d_model // num_heads = {self.d_model // self.num_heads} must be even "
                "(rotary embeddings rotate feature pairs)"
            )
        if self.pos_embedding not in POS_EMBEDDINGS:
            raise ValueError(f"pos_embedding={self.pos_embedding!r} (config.model.pos_embedding) is "
                             f"not one of {list(POS_EMBEDDINGS)}")
        if self.time_input not in time_input_lib.TIME_INPUTS:
            raise ValueError(f"time_input={self.time_input!r} (config.model.time_input) is not one "
                             f"of {list(time_input_lib.TIME_INPUTS)}")
        if (self.time_input == "sigma" or self.scale_by_sigma) and self.schedule is None:
            raise ValueError("time_input='sigma' and scale_by_sigma need the process's schedule "
                             "(DiffusionTransformer.schedule)")

    def _conditioning(self, t: Array | None, label: Array | None, batch: int, length: int,
                      latent: Array | None = None) -> Array:
        """SiLU-activated conditioning `[B, Lc, C]` (Lc = 1: t per sequence; Lc = L: per token)."""
        cond = jnp.zeros((batch, 1, self.cond_dim), jnp.float32)  # [B, 1, C]
        if self.time_conditioning:
            t = self._times(t, batch, length)  # [B, Lc]
            if self.time_input == "sigma":  # -log alpha_t, unscaled (the reference DiTs)
                t, time_scale = time_input_lib.sigma_of(self.schedule, t), 1.0
            else:
                time_scale = self.time_scale
            time_embed = TimestepEmbedder(
                self.cond_dim,
                time_scale=time_scale,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="time_embed",
            )
            cond = cond + time_embed(t).astype(jnp.float32)  # [B, Lc, C]
        if self.num_labels > 0:
            if label is None:
                raise ValueError(
                    f"label is required: this model is class-conditional (num_labels="
                    f"{self.num_labels}); pass label={self.num_labels} for the null label"
                )
            label = jnp.asarray(label)
            if label.shape != (batch,):
                raise ValueError(f"label must have shape [B]={(batch,)}, got {label.shape}")
            label_embed = nn.Embed(
                self.num_labels + 1,
                self.cond_dim,
                param_dtype=self.param_dtype,
                embedding_init=embed_init,
                name="label_embed",
            )
            cond = cond + label_embed(label)[:, None, :]  # [B, 1, C]
        elif label is not None:
            raise ValueError(
                "label was passed but the model is unconditional (num_labels=0); "
                "set config.model.num_labels to train a class-conditional model"
            )
        if self.latent_dim > 0:
            cond = cond + self._latent_embedding(latent, batch)  # [B, 1, C]
        elif latent is not None:
            raise ValueError("latent was passed but the model has latent_dim=0; set "
                             "config.model.latent_dim (the VADD method does)")
        return nn.silu(cond)

    @staticmethod
    def _times(t: Array | None, batch: int, length: int) -> Array:
        """t as float32 `[B, Lc]` (Lc = 1: one time per sequence; Lc = L: per position)."""
        if t is None:
            raise ValueError("t is required when time_conditioning=True or scale_by_sigma=True")
        t = jnp.asarray(t, jnp.float32)
        if t.ndim == 0:
            t = jnp.broadcast_to(t, (batch,))
        if t.shape == (batch,):
            t = t[:, None]  # [B, 1]: one time per sequence, broadcast over positions
        elif t.shape != (batch, length):
            raise ValueError(
                f"t must have shape [B]={(batch,)} or [B, L]={(batch, length)}, got {t.shape}"
            )
        return t

    def _latent_embedding(self, latent: Array | None, batch: int) -> Array:
        """latent_embed(z) `[B, 1, C]` (float32) of a latent z `[B, Z]`."""
        if latent is None:
            raise ValueError(f"latent z [B, {self.latent_dim}] is required: latent_dim="
                             f"{self.latent_dim}")
        latent = jnp.asarray(latent, jnp.float32)
        if latent.shape != (batch, self.latent_dim):
            raise ValueError(f"latent must have shape [B, Z]={(batch, self.latent_dim)}, got "
                             f"{latent.shape}")
        embed = LatentEmbedder(self.cond_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                               name="latent_embed")
        return embed(latent).astype(jnp.float32)[:, None, :]

    def _embed_tokens(self, x_t: Array, noise: Array | None) -> Array:
        """Input embedding `[B, L, D]` (float32) of x_t, plus the noise ids u if `noise_input`."""
        embed = dict(param_dtype=self.param_dtype, embedding_init=embed_init)
        h = Embed(self.input_vocab_size, self.d_model, name="token_embed", **embed)(x_t)
        if self.noise_input:
            if noise is None:
                raise ValueError("noise (the noise ids u, [B, L]) is required: noise_input=True")
            if noise.shape != x_t.shape:
                raise ValueError(f"noise must have the shape of x_t {x_t.shape}, got {noise.shape}")
            noise_embed = Embed(self.input_vocab_size, self.d_model, name="noise_embed", **embed)
            h = h + noise_embed(noise)
            match = self.param("match_embed", embed_init, (self.d_model,), self.param_dtype)
            h = h + (x_t == noise)[..., None].astype(h.dtype) * match  # 1[x_t == u] * w
        elif noise is not None:
            raise ValueError(
                "noise was passed but the model was built with noise_input=False; "
                "set config.model.noise_input=True (needed by the uniform_absorbing process)"
            )
        return h.astype(jnp.float32)

    def _embed_soft(self, soft_ids: Array | None, soft_weights: Array) -> Array:
        """Input embedding `[B, L, D]` (float32) of a soft input: a weighted bag of rows of the
        token_embed table E (Duo's tempered-softmax input; Duo II's `F.embedding_bag(mode='sum')`).

        soft_ids None: soft_weights `[B, L, V]` is a dense distribution, h = soft_weights @ E.
        Otherwise soft_ids int `[B, L, k]` and soft_weights `[B, L, k]`, h = sum_j w_j E[ids_j]
        (k rows gathered per token, never a V-wide array). One-hot weights give the id path.
        """
        if self.noise_input:
            raise ValueError("soft inputs (soft_weights) are not supported with noise_input=True")
        embed = Embed(self.input_vocab_size, self.d_model, name="token_embed",
                      param_dtype=self.param_dtype, embedding_init=embed_init)
        table = embed.embedding  # [V, D]
        w = jnp.asarray(soft_weights, jnp.float32)
        if soft_ids is None:
            if w.shape[-1] != self.input_vocab_size:
                raise ValueError(f"dense soft_weights must be [B, L, V={self.input_vocab_size}] "
                                 f"(or pass soft_ids), got shape {w.shape}")
            h = jnp.einsum("blv,vd->bld", w, table.astype(jnp.float32))
        else:
            soft_ids = jnp.asarray(soft_ids)
            if soft_ids.shape != w.shape:
                raise ValueError(f"soft_ids {soft_ids.shape} and soft_weights {w.shape} must have "
                                 "the same shape [B, L, k]")
            rows = jnp.take(table, soft_ids, axis=0).astype(jnp.float32)  # [B, L, k, D]
            h = jnp.einsum("blk,blkd->bld", w, rows)
        return h

    @nn.compact
    def __call__(
        self,
        x_t: Array | None,
        t: Array | None = None,
        *,
        train: bool = False,
        noise: Array | None = None,
        label: Array | None = None,
        soft_ids: Array | None = None,
        soft_weights: Array | None = None,
        latent: Array | None = None,
        output_positions: Array | None = None,
        return_hidden: bool = False,
    ) -> Array:
        """Float32 logits `[B, L, K]` of the clean tokens given x_t `[B, L]` and t `[B]`/`[B, L]`.

        `train=True` enables dropout (then apply needs a 'dropout' rng). `noise` `[B, L]` int: the
        noise ids u (only with noise_input). `label` `[B]` int (only with num_labels > 0).
        Soft input instead of x_t (pass x_t=None): `soft_weights` `[B, L, k]` with `soft_ids`
        `[B, L, k]` (embedding bag), or `soft_weights` `[B, L, V]` alone (dense); see
        `_embed_soft`. The token_embed table is the one the id path reads.
        `latent` `[B, Z]` float: the VADD latent z (only with latent_dim = Z > 0).
        `output_positions` int `[B, P]`: logits only at these positions, `[B, P, K]` (row b, slot p
        is position output_positions[b, p] of the full output): the final hidden states are
        gathered before the final adaLN norm and projection, so the [B, L, K] logits never exist
        (the samplers that draw a few tokens per call use it; see `sampling.context`).
        `return_hidden=True`: instead of the logits, the final hidden states h `[B, L, D]`
        (float32, after the final adaLN LayerNorm) with logits = `self.project_hidden(params, h)`,
        for callers that compute the projection (and a loss) in chunks of positions.
        """
        self._check_sizes()
        if soft_weights is not None:
            if x_t is not None:
                raise ValueError("pass either x_t or soft_weights (with soft_ids), not both")
            soft_weights = jnp.asarray(soft_weights)
            if soft_weights.ndim != 3:
                raise ValueError(f"soft_weights must be [B, L, k], got shape {soft_weights.shape}")
            B, L = soft_weights.shape[:2]
            cond = self._conditioning(t, label, B, L, latent)  # [B, Lc, C]
            h = self._embed_soft(soft_ids, soft_weights)  # [B, L, D]
        else:
            if soft_ids is not None:
                raise ValueError("soft_ids was passed without soft_weights")
            x_t = jnp.asarray(x_t)
            if x_t.ndim != 2:
                raise ValueError(f"x_t must be [B, L] token ids, got shape {x_t.shape}")
            B, L = x_t.shape
            cond = self._conditioning(t, label, B, L, latent)  # [B, Lc, C]
            h = self._embed_tokens(x_t, None if noise is None else jnp.asarray(noise))  # [B, L, D]
        if self.pos_embedding == "rotary+learned":
            h = add_learned_positions(self, h, self.max_len, self.param_dtype)  # [B, L, D]

        # remat_module, not nn.remat: XLA's CPU pipeline merges nn.remat's recomputation back
        # into the forward pass (models/remat.py), which then saves no memory
        block_cls = remat_module(DiTBlock, static_argnums=(3,)) if self.remat else DiTBlock
        for i in range(self.num_layers):
            h = block_cls(
                self.num_heads,
                mlp_ratio=self.mlp_ratio,
                dropout=self.dropout,
                causal=self.causal,
                rotary_base=self.rotary_base,
                attention_impl=self.attention_impl,
                attention_block=self.attention_block,
                qkv_flat=self.qkv_flat,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"blocks_{i}",
            )(h, cond, not train)
        if output_positions is not None:
            h, cond = _gather_positions(h, cond, output_positions)  # [B, P, D], [B, 1 or P, C]
        out = FinalLayer(
            self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="final"
        )(h, cond, return_hidden)  # [B, L, K] float32 ([B, L, D] with return_hidden)
        if not self.scale_by_sigma:
            return out
        if return_hidden:
            raise ValueError("return_hidden=True is not supported with scale_by_sigma=True "
                             "(project_hidden does not apply SEDD's output shift)")
        shift = time_input_lib.score_shift(
            time_input_lib.sigma_of(self.schedule, self._times(t, B, L)), self.input_vocab_size)
        if output_positions is not None and shift.shape[1] > 1:  # per-position times
            shift = jnp.take_along_axis(shift, jnp.asarray(output_positions), axis=1)
        return out - shift[..., None]  # [B, L, K]: SEDD's log-score (time_input.py eq. 1)

    @nn.nowrap
    def project_hidden(self, params: Any, h: Array) -> Array:
        """Float32 logits `[..., K]` = h W + b of hidden states h `[..., D]` from
        `__call__(..., return_hidden=True)`; `params` is the network's parameter tree (final/out).
        Equal to the logits `__call__` returns, row for row."""
        return output_projection(params["final"]["out"], h, self.dtype)


def _gather_positions(h: Array, cond: Array, positions: Array) -> tuple[Array, Array]:
    """h `[B, L, D]` and cond `[B, Lc, C]` at `positions` int `[B, P]`: `[B, P, D]` and `[B, Lc', C]`
    (cond is gathered only when it is per position, Lc = L > 1)."""
    positions = jnp.asarray(positions)
    if positions.ndim != 2 or positions.shape[0] != h.shape[0]:
        raise ValueError(f"output_positions must be int [B, P] with B={h.shape[0]}, got shape "
                         f"{positions.shape}")
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise TypeError(f"output_positions must be integer, got {positions.dtype}")
    h = jnp.take_along_axis(h, positions[..., None], axis=1)
    if cond.shape[1] > 1:
        cond = jnp.take_along_axis(cond, positions[..., None], axis=1)
    return h, cond


class AutoregressiveTransformer(DiffusionTransformer):
    """The autoregressive baseline: the same network with causal attention and no time input.

    Shift convention (teacher forcing): the input is the clean sequence shifted right by one with a
    BOS id in front, `ar_inputs(x0, bos_id)[:, i] = x0[:, i - 1]` (`bos_id` at i = 0), and
    `logits[:, i]` predicts `x0[:, i]` from `x0[:, :i]`; so log p(x0) = sum_i log_softmax(logits)
    [:, i, x0[:, i]]. `bos_id` must be < input_vocab_size (use input_vocab_size = K + 1 for a
    dedicated BOS id K, or K when the vocabulary has its own BOS/EOS). Call as `model(inputs)`.
    """

    causal: bool = True
    time_conditioning: bool = False


def ar_inputs(x0: Array, bos_id: int) -> Array:
    """Teacher-forcing AR inputs: x0 `[B, L]` shifted right by one, `bos_id` at position 0."""
    x0 = jnp.asarray(x0)
    bos = jnp.full(x0.shape[:-1] + (1,), bos_id, dtype=x0.dtype)  # [B, 1]
    return jnp.concatenate([bos, x0[..., :-1]], axis=-1)  # [B, L]


def example_inputs(model: DiffusionTransformer, batch_size: int = 1, seq_len: int = 8) -> dict:
    """Keyword arguments for `model.init(rngs, **example_inputs(model, B, L))`.

    Holds `x_t` (zeros `[B, L]`), `t` (0.5 `[B]`), and `noise` / `label` / `latent` when the model
    needs them.
    """
    inputs: dict[str, Array] = {
        "x_t": jnp.zeros((batch_size, seq_len), jnp.int32),
        "t": jnp.full((batch_size,), 0.5, jnp.float32),
    }
    if model.noise_input:
        inputs["noise"] = jnp.zeros((batch_size, seq_len), jnp.int32)
    if model.num_labels > 0:
        inputs["label"] = jnp.full((batch_size,), model.num_labels, jnp.int32)
    if model.latent_dim > 0:
        inputs["latent"] = jnp.zeros((batch_size, model.latent_dim), jnp.float32)
    return inputs
