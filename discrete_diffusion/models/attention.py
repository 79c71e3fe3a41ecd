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
masked out. With `causal`, key j is visible to query i iff j <= i, and the key blocks above the
diagonal are skipped in both passes: query block i loops over key blocks 0 .. J_i only
(`causal_key_blocks`; a loop with a trip count per query block), sum_i (J_i + 1) block pairs
instead of n_q n_kv, i.e. n (n + 1) / 2 of n^2 for n square blocks, about half the work at long L
(`benchmarks/attention_causal.py`). The skipped pairs would have contributed exactly 0: the
outputs are those of computing every pair, the gradients equal up to float32 rounding.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

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


def causal_key_blocks(length: int, block_q: int, block_kv: int) -> np.ndarray:
    """Number of key blocks `[n_q]` int32 that each query block meets in causal attention on
    `length` positions: query block i (queries i bq .. min((i + 1) bq, L) - 1) meets key blocks
    j = 0 .. J_i,

        J_i = min(n_kv - 1, floor((min((i + 1) bq, L) - 1) / bk)),   n_kv = ceil(L / bk),

    i.e. exactly the blocks holding a key visible to one of its queries (key <= query); the
    blocks above the diagonal are skipped. The forward and the backward pass both loop over
    these, sum_i (J_i + 1) block pairs instead of n_q n_kv."""
    nq, nk = -(-length // block_q), -(-length // block_kv)
    last = np.minimum(nk - 1, (np.minimum((np.arange(nq) + 1) * block_q, length) - 1) // block_kv)
    return (last + 1).astype(np.int32)


def _online_step(carry: tuple[Array, Array, Array], s: Array, v_blk: Array
                 ) -> tuple[Array, Array, Array]:
    """One key block of the online softmax: (m, l, acc) `[B, H, bq]`, `[B, H, bq]`,
    `[B, H, bq, Dh]` float32 updated with the scores s `[B, H, bq, bk]` and values v_blk."""
    m, l, acc = carry
    m_new = jnp.maximum(m, jnp.max(s, axis=-1))
    p = jnp.exp(s - m_new[..., None])
    corr = jnp.exp(m - m_new)
    l = l * corr + jnp.sum(p, axis=-1)
    pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v_blk.dtype), v_blk,
                    preferred_element_type=jnp.float32)
    return m_new, l, acc * corr[..., None] + pv


def _online_init(B: int, H: int, block_q: int, Dh: int) -> tuple[Array, Array, Array]:
    return (jnp.full((B, H, block_q), MASKED, jnp.float32),
            jnp.zeros((B, H, block_q), jnp.float32),
            jnp.zeros((B, H, block_q, Dh), jnp.float32))


def _online_finish(m: Array, l: Array, acc: Array, dtype) -> tuple[Array, Array]:
    """(o `[B, bq, H, Dh]` in dtype, lse `[B, H, bq]`) of a finished query block."""
    o = acc / l[..., None]  # [B, H, bq, Dh]
    return jnp.swapaxes(o, 1, 2).astype(dtype), m + jnp.log(l)


def _forward(q: Array, k: Array, v: Array, causal: bool, block_q: int,
             block_kv: int) -> tuple[Array, Array]:
    """(o [B, L, H, Dh] in q's dtype, lse [B, H, L] float32), every block pair computed (with
    `causal` the pairs above the diagonal contribute exactly 0)."""
    B, L, H, Dh = q.shape
    nq, nk = -(-L // block_q), -(-L // block_kv)
    qb = _blocks(_pad(q, nq * block_q), block_q)  # [nq, B, bq, H, Dh]
    kb = _blocks(_pad(k, nk * block_kv), block_kv)  # [nk, B, bk, H, Dh]
    vb = _blocks(_pad(v, nk * block_kv), block_kv)

    def one_query_block(args):
        i, q_blk = args

        def step(carry, kv):
            j, k_blk, v_blk = kv
            s = _scores(q_blk, k_blk, i, j, block_q, block_kv, L, causal)
            return _online_step(carry, s, v_blk), None

        (m, l, acc), _ = jax.lax.scan(step, _online_init(B, H, block_q, Dh),
                                      (jnp.arange(nk), kb, vb))
        return _online_finish(m, l, acc, q.dtype)  # [B, bq, H, Dh], [B, H, bq]

    o, lse = jax.lax.map(one_query_block, (jnp.arange(nq), qb))
    o = _unblocks(o)[:, :L]  # [B, L, H, Dh]
    lse = jnp.moveaxis(lse, 0, 2).reshape(B, H, nq * block_q)[:, :, :L]  # [B, H, L]
    return o, lse


def _forward_causal(q: Array, k: Array, v: Array, block_q: int,
                    block_kv: int) -> tuple[Array, Array]:
    """`_forward(..., causal=True)` computing only the block pairs of `causal_key_blocks`: query
    block i runs the online softmax over key blocks 0 .. J_i (a loop whose trip count J_i + 1
    is read per query block), the same steps in the same order minus the masked blocks, which
    contributed exactly 0."""
    B, L, H, Dh = q.shape
    nq, nk = -(-L // block_q), -(-L // block_kv)
    qb = _blocks(_pad(q, nq * block_q), block_q)  # [nq, B, bq, H, Dh]
    kb = _blocks(_pad(k, nk * block_kv), block_kv)  # [nk, B, bk, H, Dh]
    vb = _blocks(_pad(v, nk * block_kv), block_kv)
    n_kv = jnp.asarray(causal_key_blocks(L, block_q, block_kv))  # [nq]

    def one_query_block(args):
        i, n, q_blk = args

        def step(j, carry):
            s = _scores(q_blk, _take(kb, j), i, j, block_q, block_kv, L, True)
            return _online_step(carry, s, _take(vb, j))

        m, l, acc = jax.lax.fori_loop(0, n, step, _online_init(B, H, block_q, Dh))
        return _online_finish(m, l, acc, q.dtype)  # [B, bq, H, Dh], [B, H, bq]

    o, lse = jax.lax.map(one_query_block, (jnp.arange(nq), n_kv, qb))
    o = _unblocks(o)[:, :L]  # [B, L, H, Dh]
    lse = jnp.moveaxis(lse, 0, 2).reshape(B, H, nq * block_q)[:, :, :L]  # [B, H, L]
    return o, lse


def _take(x: Array, i: Array) -> Array:
    """x[i] of a stack of blocks `[n, ...]`, i traced."""
    return jax.lax.dynamic_index_in_dim(x, i, keepdims=False)


def _put(x: Array, value: Array, i: Array) -> Array:
    """x with x[i] = value (in place in a loop carry)."""
    return jax.lax.dynamic_update_index_in_dim(x, value, i, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _attention(q: Array, k: Array, v: Array, causal: bool, block_q: int, block_kv: int,
               skip: bool) -> Array:
    """Blockwise attention; with `causal` and `skip` only the pairs of `causal_key_blocks` are
    computed (`skip=False`: every pair, the masked ones contributing 0; for benchmarks)."""
    return _attention_fwd(q, k, v, causal, block_q, block_kv, skip)[0]


def _attention_fwd(q, k, v, causal, block_q, block_kv, skip):
    if causal and skip:
        o, lse = _forward_causal(q, k, v, block_q, block_kv)
    else:
        o, lse = _forward(q, k, v, causal, block_q, block_kv)
    return o, (q, k, v, o, lse)


def _pair_grads(q_blk: Array, k_blk: Array, v_blk: Array, do_blk: Array, lse_i: Array,
                delta_i: Array, i: Array, j: Array, block_q: int, block_kv: int, length: int,
                causal: bool, scale: Array, dq: Array) -> tuple[Array, Array, Array]:
    """(dq + dq_ij `[B, bq, H, Dh]`, dk_ij, dv_ij `[B, bk, H, Dh]`): the float32 gradients of
    the block pair (i, j) (module doc), the one of q_i added to dq; lse_i and delta_i
    `[B, H, bq, 1]`, scale = 1/sqrt(Dh)."""
    s = _scores(q_blk, k_blk, i, j, block_q, block_kv, length, causal)
    p = jnp.exp(s - lse_i)  # [B, H, bq, bk] float32
    dv = jnp.einsum("bhqk,bqhd->bkhd", p.astype(v_blk.dtype), do_blk,
                    preferred_element_type=jnp.float32)
    dp = jnp.einsum("bqhd,bkhd->bhqk", do_blk, v_blk, preferred_element_type=jnp.float32)
    ds = (p * (dp - delta_i)).astype(q_blk.dtype)
    dq = dq + jnp.einsum("bhqk,bkhd->bqhd", ds, k_blk,
                         preferred_element_type=jnp.float32) * scale
    dk = jnp.einsum("bhqk,bqhd->bkhd", ds, q_blk, preferred_element_type=jnp.float32) * scale
    return dq, dk, dv


def _attention_bwd(causal, block_q, block_kv, skip, residuals, do):
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
    zeros = jnp.zeros((nk, B, block_kv, H, Dh), jnp.float32)

    if causal and skip:  # query block i meets key blocks 0 .. J_i only (causal_key_blocks)
        n_kv = jnp.asarray(causal_key_blocks(L, block_q, block_kv))  # [nq]

        def one_query_block(dkv, xs):
            i, n, q_blk, do_blk, lse_blk, delta_blk = xs  # lse, delta: [B, bq, H]
            lse_i = jnp.moveaxis(lse_blk, 1, 2)[..., None]  # [B, H, bq, 1]
            delta_i = jnp.moveaxis(delta_blk, 1, 2)[..., None]

            def step(j, carry):
                dq, dk_all, dv_all = carry  # [B, bq, H, Dh], [nk, B, bk, H, Dh] x 2
                dq, dk, dv = _pair_grads(q_blk, _take(kb, j), _take(vb, j), do_blk, lse_i,
                                         delta_i, i, j, block_q, block_kv, L, True, scale, dq)
                dk_all = _put(dk_all, _take(dk_all, j) + dk, j)
                return dq, dk_all, _put(dv_all, _take(dv_all, j) + dv, j)

            dq0 = jnp.zeros((B, block_q, H, Dh), jnp.float32)
            dq, dk, dv = jax.lax.fori_loop(0, n, step, (dq0,) + dkv)
            return (dk, dv), dq

        (dk, dv), dq = jax.lax.scan(one_query_block, (zeros, zeros),
                                    (jnp.arange(nq), n_kv, qb, dob, lseb, deltab))
    else:
        def one_query_block(dkv, xs):
            i, q_blk, do_blk, lse_blk, delta_blk = xs  # lse, delta: [B, bq, H]
            lse_i = jnp.moveaxis(lse_blk, 1, 2)[..., None]  # [B, H, bq, 1]
            delta_i = jnp.moveaxis(delta_blk, 1, 2)[..., None]

            def step(dq, kv):
                j, k_blk, v_blk = kv
                dq, dk, dv = _pair_grads(q_blk, k_blk, v_blk, do_blk, lse_i, delta_i, i, j,
                                         block_q, block_kv, L, causal, scale, dq)
                return dq, (dk, dv)

            dq0 = jnp.zeros((B, block_q, H, Dh), jnp.float32)
            dq, (dk, dv) = jax.lax.scan(step, dq0, (jnp.arange(nk), kb, vb))
            return (dkv[0] + dk, dkv[1] + dv), dq

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
    to L. With `causal` the key blocks above the diagonal are neither read nor computed, in the
    forward or the backward pass (`causal_key_blocks`)."""
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must share one shape [B, L, H, Dh]; got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    if block_q <= 0 or block_kv <= 0:
        raise ValueError(f"block sizes must be positive, got block_q={block_q}, "
                         f"block_kv={block_kv}")
    L = q.shape[1]
    return _attention(q, k, v, bool(causal), min(int(block_q), L), min(int(block_kv), L),
                      True)


def _matmul_scores(q: Array, k: Array, causal: bool, scale: float | None) -> Array:
    """Float32 scores [B, H, L, L] of heads-major q, k [B, H, L, Dh]: q k^T (times `scale` when
    given), masked keys at -0.7 x float32 max when `causal`."""
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    if scale is not None:
        s = s * jnp.float32(scale)
    if causal:
        L = q.shape[2]
        s = jnp.where(jnp.tril(jnp.ones((L, L), bool)), s,
                      jnp.float32(-0.7 * float(jnp.finfo(jnp.float32).max)))
    return s


def _matmul_forward(q, k, v, causal, scale):
    p = jax.nn.softmax(_matmul_scores(q, k, causal, scale), axis=-1)  # [B, H, L, L] float32
    o = jnp.einsum("bhqk,bhkd->bhqd", p.astype(v.dtype), v)  # [B, H, L, Dh]
    return o, p


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _matmul_core(q: Array, k: Array, v: Array, causal: bool, scale: float | None) -> Array:
    """softmax(q k^T [x scale], masked) v of heads-major [B, H, L, Dh] operands, differentiated
    by `_matmul_core_bwd`."""
    return _matmul_forward(q, k, v, causal, scale)[0]


def _matmul_core_fwd(q, k, v, causal, scale):
    o, p = _matmul_forward(q, k, v, causal, scale)
    return o, (q, k, v, p, o)


def _matmul_core_bwd(causal, scale, residuals, do):
    """The backward pass of the module doc with the stored probabilities p (no recomputation):
    dv = p^T do, dp = do v^T, ds = p (dp - D) with D_i = sum_d do_id o_id (= sum_j p_ij dp_ij),
    dq = ds k, dk = ds^T q (each times `scale` when the scores were scaled). Masked keys have
    p = 0 exactly, hence ds = 0."""
    del causal
    q, k, v, p, o = residuals
    dv = jnp.einsum("bhqk,bhqd->bhkd", p.astype(v.dtype), do)
    dp = jnp.einsum("bhqd,bhkd->bhqk", do, v, preferred_element_type=jnp.float32)
    if o.dtype == jnp.float32:
        D = jnp.sum(do * o, axis=-1, keepdims=True)  # [B, H, L, 1]
    else:  # o rounded to a narrow dtype would put its rounding into every ds_ij
        D = jnp.sum(p * dp, axis=-1, keepdims=True)
    ds = p * (dp - D)  # [B, H, L, L] float32
    if scale is not None:
        ds = ds * jnp.float32(scale)
    ds = ds.astype(q.dtype)
    dq = jnp.einsum("bhqk,bhkd->bhqd", ds, k)
    dk = jnp.einsum("bhqk,bhqd->bhkd", ds, q)
    return dq, dk, dv.astype(v.dtype)


_matmul_core.defvjp(_matmul_core_fwd, _matmul_core_bwd)


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
    of each compiled forward + backward pass). The default implementation.

    Its backward pass is FlashAttention's formula on the stored probabilities (`_matmul_core_bwd`:
    ds = p (dp - D), D_i = do_i . o_i) rather than autodiff through the softmax, which on the
    CPU recomputed p = exp(s - m) / l inside the backward products and kept a broadcast copy of
    1 / l per layer: the small model's attention (B 32, L 256, H 8, Dh 32, float32) forward and
    backward 0.85x the time and 0.75 of the bytes (`benchmarks/attention_layouts.py`). Gradients
    equal autodiff's up to float32 rounding (for narrower dtypes D uses the rounded o, as
    FlashAttention does; `tests/test_attention_matmul.py`)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    if q.dtype == jnp.float32:
        # Scale q [B, L, H, Dh] rather than the scores [B, H, L, L]: on the CPU the scaled
        # scores were one more [B, H, L, L] array (a broadcast of the scale fed to the fused
        # matmul), ~16% of the attention's bytes. Exact when Dh is a power of 4 (scale = 2^-n),
        # else one float32 rounding of q. Narrower dtypes scale the float32 scores.
        q = q * jnp.float32(scale)
    # Heads-major operands [B, H, L, Dh] (explicit transposes): XLA:CPU then multiplies
    # [L, Dh] blocks and writes P V as [B, H, L, Dh]; from the [B, L, H, Dh] operands it chose
    # strided layouts, P V into [B, H, Dh, L] (small model's shape B 32, L 256, H 8, Dh 32:
    # forward and backward 0.78x the time, causal 0.84x, `benchmarks/attention_layouts.py`).
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))  # [B, H, L, Dh]
    o = _matmul_core(q, k, v, bool(causal), None if q.dtype == jnp.float32 else scale)
    return jnp.swapaxes(o, 1, 2)  # [B, L, H, Dh]


def auto_implementation(seq_len: int, block: int, platform: str | None = None) -> str:
    """What `implementation=None` runs: on the CPU, 'blockwise' when the sequence spans more than
    one block (seq_len > block), else 'matmul'; on other platforms (GPU, TPU) always 'matmul'
    (choose 'cudnn' or 'blockwise' there explicitly).

    Why (2-core CPU, float32, `benchmarks/train_throughput.py --attention=matmul,blockwise`): the
    12-layer d = 768 train step at L = 1024, batch 2, took 0.65x the time with blockwise attention
    (two blocks of 512), which keeps no [B, H, L, L] probabilities for the backward pass; at
    L <= block the blockwise path is a single block and no faster (1.02x at L = 256), so short
    sequences keep the two-einsum path and its numerics bit for bit. `platform`: None for
    `jax.default_backend()`."""
    platform = platform or jax.default_backend()
    return "blockwise" if platform == "cpu" and seq_len > block else "matmul"


def balanced_block(seq_len: int, block: int) -> int:
    """The block the default uses for blockwise attention: as few blocks as with `block`, of
    equal size, b = ceil(L / ceil(L / block)), so little padding is computed (L = 784, block 512:
    two blocks of 392 instead of 512 + a padded 512; the 4-layer d = 128 step took 0.76x the
    matmul path's time with 392, 0.87x with 512)."""
    n = -(-seq_len // block)
    return -(-seq_len // n)


def dot_product_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                          implementation: str | None = None, block: int = 512) -> Array:
    """Softmax attention `[B, L, H, Dh]` of q, k, v `[B, L, H, Dh]` (scale 1/sqrt(Dh), float32
    softmax), by `implementation`: None (the default: `auto_implementation` chooses by platform
    and length; blockwise then in `balanced_block`s), 'matmul' (`matmul_attention`), 'blockwise'
    (`blockwise_attention`, blocks of `block` queries x `block` keys), 'xla' or 'cudnn'
    (`jax.nn.dot_product_attention`'s paths)."""
    if implementation is None:
        implementation = auto_implementation(q.shape[1], block)
        block = balanced_block(q.shape[1], block)
    if implementation == "matmul":
        return matmul_attention(q, k, v, causal=causal)
    if implementation == "blockwise":
        return blockwise_attention(q, k, v, causal=causal, block_q=block, block_kv=block)
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)
