"""Blockwise (flash-style) attention in pure JAX: an online softmax over key blocks, and a
backward pass that recomputes the probabilities block by block, so no `[B, H, L, L]` array of
scores or probabilities is ever kept (`config.model.attention_impl='blockwise'`).

For queries q_i, keys k_j and values v_j (heads independent, scale 1/sqrt(Dh)) attention is

    s_ij = (q_i . k_j) / sqrt(Dh),   p_ij = exp(s_ij - lse_i),   lse_i = log sum_j exp(s_ij),
    o_i  = sum_j p_ij v_j.

Forward (Milakov & Gimelshein 2018's online softmax, as in FlashAttention, Dao et al. 2022):
for each block of queries, a scan over key blocks carries the running max m_i, the running sum
l_i = sum_j exp(s_ij - m_i) and the unnormalised output a_i = sum_j exp(s_ij - m_i) v_j; a new
block with max m'_i rescales them by exp(m_i - m'_i). At the end o_i = a_i / l_i and
lse_i = m_i + log l_i. Only (q, k, v, o, lse) are kept for the backward pass.

Backward (FlashAttention's, Dao et al. 2022, algorithm 4), with do the output cotangent and
D_i = sum_d do_id o_id: per block pair p_ij = exp(s_ij - lse_i) is recomputed, and

    dv_j += sum_i p_ij do_i,     dp_ij = do_i . v_j,     ds_ij = p_ij (dp_ij - D_i),
    dq_i += sum_j ds_ij k_j / sqrt(Dh),                  dk_j += sum_i ds_ij q_i / sqrt(Dh).

Memory: one `[B, H, block_q, block_kv]` block of scores at a time (and its few temporaries),
instead of the `[B, H, L, L]` probabilities that the XLA path of `jax.nn.dot_product_attention`
keeps for the backward pass of every layer. Precision follows `jax.nn.dot_product_attention`:
scores and the softmax in float32, products of `dtype` operands accumulated in float32, the
probabilities cast to the value dtype before the product with v.

Lengths need not be multiples of the blocks: queries and keys are padded and the padded keys
masked out. With `causal`, key j is visible to query i iff j <= i; fully masked block pairs are
computed and contribute exactly 0 (no skipping: the causal model is the small AR baseline).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

Array = jax.Array

# Masked scores: finite, so an all-masked block gives no NaN; any real score later in the scan
# rescales what such a block added by exp(MASKED - m) = 0 exactly (every query sees key 0).
MASKED = -1e30


def _blocks(x: Array, block: int) -> Array:
    """[B, L', ...] (L' a multiple of block) -> [L' / block, B, block, ...]."""
    B, Lp = x.shape[:2]
    return jnp.swapaxes(x.reshape((B, Lp // block, block) + x.shape[2:]), 0, 1)


def _unblocks(x: Array) -> Array:
    """[n, B, block, ...] -> [B, n block, ...]."""
    n, B, block = x.shape[:3]
    return jnp.swapaxes(x, 0, 1).reshape((B, n * block) + x.shape[3:])


def _pad(x: Array, length: int) -> Array:
    return jnp.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def _scores(q_blk: Array, k_blk: Array, i: Array, j: Array, block_q: int, block_kv: int,
            length: int, causal: bool) -> Array:
    """Scaled, masked float32 scores `[B, H, bq, bk]` of query block i against key block j."""
    s = jnp.einsum("bqhd,bkhd->bhqk", q_blk, k_blk, preferred_element_type=jnp.float32)
    s = s * jnp.float32(1.0 / math.sqrt(q_blk.shape[-1]))
    kpos = j * block_kv + jnp.arange(block_kv)  # [bk]
    visible = (kpos < length)[None, :]
    if causal:
        qpos = i * block_q + jnp.arange(block_q)  # [bq]
        visible = visible & (kpos[None, :] <= qpos[:, None])  # [bq, bk]
    return jnp.where(visible, s, MASKED)


def _forward(q: Array, k: Array, v: Array, causal: bool, block_q: int,
             block_kv: int) -> tuple[Array, Array]:
    """(o [B, L, H, Dh] in q's dtype, lse [B, H, L] float32)."""
    B, L, H, Dh = q.shape
    nq, nk = -(-L // block_q), -(-L // block_kv)
    qb = _blocks(_pad(q, nq * block_q), block_q)  # [nq, B, bq, H, Dh]
    kb = _blocks(_pad(k, nk * block_kv), block_kv)  # [nk, B, bk, H, Dh]
    vb = _blocks(_pad(v, nk * block_kv), block_kv)

    def one_query_block(args):
        i, q_blk = args

        def step(carry, kv):
            m, l, acc = carry  # [B, H, bq], [B, H, bq], [B, H, bq, Dh] float32
            j, k_blk, v_blk = kv
            s = _scores(q_blk, k_blk, i, j, block_q, block_kv, L, causal)
            m_new = jnp.maximum(m, jnp.max(s, axis=-1))
            p = jnp.exp(s - m_new[..., None])
            corr = jnp.exp(m - m_new)
            l = l * corr + jnp.sum(p, axis=-1)
            pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v.dtype), v_blk,
                            preferred_element_type=jnp.float32)
            return (m_new, l, acc * corr[..., None] + pv), None

        init = (jnp.full((B, H, block_q), MASKED, jnp.float32),
                jnp.zeros((B, H, block_q), jnp.float32),
                jnp.zeros((B, H, block_q, Dh), jnp.float32))
        (m, l, acc), _ = jax.lax.scan(step, init, (jnp.arange(nk), kb, vb))
        o = acc / l[..., None]  # [B, H, bq, Dh]
        return jnp.swapaxes(o, 1, 2).astype(q.dtype), m + jnp.log(l)  # [B, bq, H, Dh], [B, H, bq]

    o, lse = jax.lax.map(one_query_block, (jnp.arange(nq), qb))
    o = _unblocks(o)[:, :L]  # [B, L, H, Dh]
    lse = jnp.moveaxis(lse, 0, 2).reshape(B, H, nq * block_q)[:, :, :L]  # [B, H, L]
    return o, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _attention(q: Array, k: Array, v: Array, causal: bool, block_q: int, block_kv: int) -> Array:
    return _forward(q, k, v, causal, block_q, block_kv)[0]


def _attention_fwd(q, k, v, causal, block_q, block_kv):
    o, lse = _forward(q, k, v, causal, block_q, block_kv)
    return o, (q, k, v, o, lse)


def _attention_bwd(causal, block_q, block_kv, residuals, do):
    q, k, v, o, lse = residuals
    B, L, H, Dh = q.shape
    scale = jnp.float32(1.0 / math.sqrt(Dh))
    nq, nk = -(-L // block_q), -(-L // block_kv)
    delta = jnp.einsum("blhd,blhd->bhl", do.astype(jnp.float32), o.astype(jnp.float32))
    qb = _blocks(_pad(q, nq * block_q), block_q)  # [nq, B, bq, H, Dh]
    dob = _blocks(_pad(do, nq * block_q), block_q)
    lseb = _blocks(_pad(jnp.moveaxis(lse, 2, 1), nq * block_q), block_q)  # [nq, B, bq, H]
    deltab = _blocks(_pad(jnp.moveaxis(delta, 2, 1), nq * block_q), block_q)  # [nq, B, bq, H]
    kb = _blocks(_pad(k, nk * block_kv), block_kv)  # [nk, B, bk, H, Dh]
    vb = _blocks(_pad(v, nk * block_kv), block_kv)

    def one_query_block(dkv, xs):
        i, q_blk, do_blk, lse_blk, delta_blk = xs  # lse, delta: [B, bq, H]
        lse_i = jnp.moveaxis(lse_blk, 1, 2)[..., None]  # [B, H, bq, 1]
        delta_i = jnp.moveaxis(delta_blk, 1, 2)[..., None]

        def step(dq, kv):
            j, k_blk, v_blk = kv
            s = _scores(q_blk, k_blk, i, j, block_q, block_kv, L, causal)
            p = jnp.exp(s - lse_i)  # [B, H, bq, bk] float32
            dv = jnp.einsum("bhqk,bqhd->bkhd", p.astype(v.dtype), do_blk,
                            preferred_element_type=jnp.float32)
            dp = jnp.einsum("bqhd,bkhd->bhqk", do_blk, v_blk, preferred_element_type=jnp.float32)
            ds = (p * (dp - delta_i)).astype(q.dtype)
            dq = dq + jnp.einsum("bhqk,bkhd->bqhd", ds, k_blk,
                                 preferred_element_type=jnp.float32) * scale
            dk = jnp.einsum("bhqk,bqhd->bkhd", ds, q_blk,
                            preferred_element_type=jnp.float32) * scale
            return dq, (dk, dv)

        dq0 = jnp.zeros((B, block_q, H, Dh), jnp.float32)
        dq, (dk, dv) = jax.lax.scan(step, dq0, (jnp.arange(nk), kb, vb))
        return (dkv[0] + dk, dkv[1] + dv), dq

    zeros = jnp.zeros((nk, B, block_kv, H, Dh), jnp.float32)
    (dk, dv), dq = jax.lax.scan(one_query_block, (zeros, zeros),
                                (jnp.arange(nq), qb, dob, lseb, deltab))
    dq = _unblocks(dq)[:, :L].astype(q.dtype)
    dk = _unblocks(dk)[:, :L].astype(k.dtype)
    dv = _unblocks(dv)[:, :L].astype(v.dtype)
    return dq, dk, dv


_attention.defvjp(_attention_fwd, _attention_bwd)


def blockwise_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                        block_q: int = 512, block_kv: int = 512) -> Array:
    """Softmax attention `[B, L, H, Dh]` of q, k, v `[B, L, H, Dh]` (same layout and result as
    `jax.nn.dot_product_attention(q, k, v, is_causal=causal)`), computed in blocks of `block_q`
    queries x `block_kv` keys with an online softmax and a blockwise backward pass (module doc):
    the memory is O(B H block_q block_kv) instead of O(B H L^2). Blocks longer than L are cut
    to L."""
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must share one shape [B, L, H, Dh]; got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if block_q <= 0 or block_kv <= 0:
        raise ValueError(f"block sizes must be positive, got block_q={block_q}, "
                         f"block_kv={block_kv}")
    L = q.shape[1]
    return _attention(q, k, v, bool(causal), min(int(block_q), L), min(int(block_kv), L))


def matmul_attention(q: Array, k: Array, v: Array, *, causal: bool = False) -> Array:
    """Softmax attention `[B, L, H, Dh]` of q, k, v `[B, L, H, Dh]` written as two batched
    matmuls over (B, H) and a float32 softmax, the arithmetic of the XLA path of
    `jax.nn.dot_product_attention` (scores in float32, masked keys at -0.7 x float32 max,
    probabilities cast to v's dtype before the product with v), except that a float32 q is
    scaled by 1/sqrt(Dh) before the product instead of the scores after it (equal bit for bit
    when Dh is a power of 4, e.g. 64; within float32 rounding otherwise).

    Unlike that path it puts no vmap over head groups around the einsums: there the grouped
    `[B, H, 1, L, L]` layout made XLA transpose and copy the float32 probability tensor once per
    layer in the backward pass (`benchmarks/attention_bytes.py` counts the `[B, H, L, L]` arrays
    of each compiled forward + backward pass). The default implementation."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    if q.dtype == jnp.float32:
        # Scale q [B, L, H, Dh] rather than the scores [B, H, L, L]: on the CPU the scaled
        # scores were one more [B, H, L, L] array (a broadcast of the scale fed to the fused
        # matmul), ~16% of the attention's bytes. Exact when Dh is a power of 4 (scale = 2^-n),
        # else one float32 rounding of q. Narrower dtypes scale the float32 scores.
        q = q * jnp.float32(scale)
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)  # [B, H, L, L]
    if q.dtype != jnp.float32:
        s = s * jnp.float32(scale)
    if causal:
        L = q.shape[1]
        s = jnp.where(jnp.tril(jnp.ones((L, L), bool)), s,
                      jnp.float32(-0.7 * float(jnp.finfo(jnp.float32).max)))
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)  # [B, L, H, Dh]


def dot_product_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                          implementation: str | None = None, block: int = 512) -> Array:
    """Softmax attention `[B, L, H, Dh]` of q, k, v `[B, L, H, Dh]` (scale 1/sqrt(Dh), float32
    softmax), by `implementation`: None (`matmul_attention`, the default), 'blockwise'
    (`blockwise_attention`, blocks of `block` queries x `block` keys), 'xla' or 'cudnn'
    (`jax.nn.dot_product_attention`'s paths)."""
    if implementation is None:
        return matmul_attention(q, k, v, causal=causal)
    if implementation == "blockwise":
        return blockwise_attention(q, k, v, causal=causal, block_q=block, block_kv=block)
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)
