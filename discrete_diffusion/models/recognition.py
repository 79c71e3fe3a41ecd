"""VADD's recognition model r_phi(z | x_0, M_t): a small transformer over the clean tokens x_0 whose
adaLN acts only at the masked positions of x_t (Xie et al., ICLR 2026, "InferDIT").

The pair (x_0, x_t) of masked diffusion is the pair (x_0, M_t), M_t in {0, 1}^L the mask of x_t.
The network reads x_0 and learns one mask representation R [C] (shared by every block); each
block projects it into adaLN modulations that are multiplied by M_t, so they act at masked
positions only:

    e             = mask_embed(R) = fc2(silu(fc1(R)))                              [C]
    (s1, c1, g1, s2, c2, g2) = adaln_b(silu(e))  (per block b, zero-init)           [6D]
    h             = token_embed(x_0)  (+ pos_embed[:L] if pos_embedding='rotary+learned')  [B, L, D]
    h = h + (1 + M g1) * attn(norm1(h) (1 + M c1) + M s1)
    h = h + (1 + M g2) * mlp(norm2(h) (1 + M c2) + M s2)           (every block; M = M_t [B, L, 1])
    (m, log s^2)  = head(mean_i norm(h)_i)                                          [B, Z] each
    r_phi(z | x_0, M_t) = N(z; m, diag s^2),   z = m + s * eps (reparameterised)

Choices (the reference code could not be read): the unmodulated block is a plain pre-LN
transformer block (gate 1, not DiT's adaLN-zero gate 0, so unmasked positions are still
processed), and the mask enters *only* through the learned modulation M * (s, c, g), as the
paper describes (at initialisation, adaln = 0, r ignores M_t until it learns to use it).
Pooling is a mean over positions (padding included); the head is zero-initialised, so r starts
at N(0, I) and the KL term at 0; log s^2 is clipped to [-LOGVAR_LIMIT, LOGVAR_LIMIT].

Positions: rotary in every block and, with `pos_embedding='rotary+learned'` (the denoiser's
config.model.pos_embedding, passed by methods/vadd.py), a learned absolute table added to the
token embedding as in the DiT (`transformer.add_learned_positions`): without it the encoder, like
the denoiser, sees positions only relative to each other and its mean-pooled summary cannot say
where in the sequence (image) the tokens are.

Parameter names (the tree under params['encoder']; Z = latent_dim):

    token_embed/embedding             [K, D]
    pos_embed                         [max_len, D]    only if pos_embedding='rotary+learned'
    mask_repr                         [C]
    mask_embed/fc1/{kernel,bias}      [C, C], [C]
    mask_embed/fc2/{kernel,bias}      [C, C], [C]
    blocks_{i}/adaln/{kernel,bias}    [C, 6D], [6D]   zero-init
    blocks_{i}/{norm1,norm2}/scale, blocks_{i}/attn/..., blocks_{i}/mlp/...   (as the DiT's)
    norm/scale                        [D]
    head/{kernel,bias}                [D, 2Z], [2Z]   zero-init
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from discrete_diffusion.models.dropout import Dropout
from discrete_diffusion.models.embedding import Embed
from discrete_diffusion.models.layers import (
    Attention,
    Mlp,
    _layer_norm,
    embed_init,
    modulate,
    zeros_init,
)
from discrete_diffusion.models.transformer import (
    POS_EMBEDDINGS,
    LatentEmbedder,
    add_learned_positions,
)

Array = jax.Array
Dtype = Any
LOGVAR_LIMIT = 10.0


class MaskedAdaLNBlock(nn.Module):
    """Pre-LN transformer block whose adaLN modulation `mod` `[6D]` acts only where `m` = 1."""

    num_heads: int
    mlp_ratio: int = 4
    dropout: float = 0.0
    attention_impl: str | None = None
    attention_block: int = 512
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, cond: Array, m: Array, deterministic: bool) -> Array:
        D = x.shape[-1]
        mod = nn.Dense(6 * D, dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=zeros_init, name="adaln")(cond)  # [6D]
        shift1, scale1, gate1, shift2, scale2, gate2 = (
            m * v.astype(jnp.float32) for v in jnp.split(mod, 6, axis=-1))  # [B, L, D] each
        h = modulate(_layer_norm("norm1", self.param_dtype)(x), shift1, scale1)
        h = Attention(self.num_heads, attention_impl=self.attention_impl,
                      attention_block=self.attention_block, dtype=self.dtype,
                      param_dtype=self.param_dtype, name="attn")(h)
        h = Dropout(self.dropout, deterministic=deterministic)(h)
        x = x + (1.0 + gate1) * h
        h = modulate(_layer_norm("norm2", self.param_dtype)(x), shift2, scale2)
        h = Mlp(self.mlp_ratio, dtype=self.dtype, param_dtype=self.param_dtype, name="mlp")(h)
        h = Dropout(self.dropout, deterministic=deterministic)(h)
        return x + (1.0 + gate2) * h


class RecognitionTransformer(nn.Module):
    """r_phi(z | x_0, M_t) (module doc): `(x0 [B, L] int, mask [B, L] bool)` -> `(mean, logvar)`
    `[B, Z]` float32 each."""

    num_classes: int
    latent_dim: int
    num_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    cond_dim: int = 64
    mlp_ratio: int = 4
    dropout: float = 0.0
    attention_impl: str | None = None
    attention_block: int = 512
    pos_embedding: str = "rotary"
    max_len: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x0: Array, mask: Array, *, train: bool = False) -> tuple[Array, Array]:
        x0 = jnp.asarray(x0)
        if x0.ndim != 2 or mask.shape != x0.shape:
            raise ValueError(f"x0 and mask must both be [B, L], got {x0.shape} and {mask.shape}")
        h = Embed(self.num_classes, self.d_model, param_dtype=self.param_dtype,
                  embedding_init=embed_init, name="token_embed")(x0).astype(jnp.float32)
        if self.pos_embedding not in POS_EMBEDDINGS:
            raise ValueError(f"pos_embedding={self.pos_embedding!r} (config.model.pos_embedding) is "
                             f"not one of {list(POS_EMBEDDINGS)}")
        if self.pos_embedding == "rotary+learned":
            h = add_learned_positions(self, h, self.max_len, self.param_dtype)  # [B, L, D]
        r = self.param("mask_repr", embed_init, (self.cond_dim,), self.param_dtype)
        cond = nn.silu(LatentEmbedder(self.cond_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                                      name="mask_embed")(r))  # [C]
        m = jnp.asarray(mask, jnp.float32)[..., None]  # [B, L, 1]
        for i in range(self.num_layers):
            h = MaskedAdaLNBlock(self.num_heads, mlp_ratio=self.mlp_ratio, dropout=self.dropout,
                                 attention_impl=self.attention_impl,
                                 attention_block=self.attention_block, dtype=self.dtype,
                                 param_dtype=self.param_dtype, name=f"blocks_{i}")(
                h, cond, m, not train)
        pooled = jnp.mean(_layer_norm("norm", self.param_dtype)(h), axis=1)  # [B, D]
        out = nn.Dense(2 * self.latent_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=zeros_init, name="head")(pooled).astype(jnp.float32)
        mean, logvar = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(logvar, -LOGVAR_LIMIT, LOGVAR_LIMIT)
