"""Blockwise (flash-style) attention (`models/attention.py`, `attention_impl='blockwise'`): values
and gradients equal `jax.nn.dot_product_attention`'s, bidirectional and causal, with blocks that
do not divide L; causal attention never reads the key blocks above the diagonal, in the forward
or the backward pass; the transformer gives the same logits with it; the config field is
validated."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic_absorbing
from discrete_diffusion import config_validation
from discrete_diffusion.models import DiffusionTransformer, attention, example_inputs, get_model
from discrete_diffusion.models.attention import blockwise_attention, causal_key_blocks


@pytest.mark.parametrize("causal", [False, True])
def test_blockwise_equals_plain_attention_values_and_gradients(causal):
    B, L, H, Dh = 2, 11, 3, 4
    ks = jax.random.split(jax.random.key(int(causal)), 4)
    q, k, v = (2.0 * jax.random.normal(kk, (B, L, H, Dh)) for kk in ks[:3])
    w = jax.random.normal(ks[3], (B, L, H, Dh))  # a random linear read-out of the output

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v) * w)

    plain = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
    # (4, 3): 11 = 2 x 4 + 3 queries, 3 x 3 + 2 keys (padding); (11, 11): one block each
    blocks = [(4, 3), (11, 11)]

    @jax.jit
    def run(q, k, v):
        out = [plain(q, k, v)] + [blockwise_attention(q, k, v, causal=causal, block_q=a,
                                                      block_kv=b) for a, b in blocks]
        grads = [jax.grad(loss(plain), argnums=(0, 1, 2))(q, k, v)] + [
            jax.grad(loss(lambda q, k, v, a=a, b=b: blockwise_attention(
                q, k, v, causal=causal, block_q=a, block_kv=b)), argnums=(0, 1, 2))(q, k, v)
            for a, b in blocks]
        return out, grads

    out, grads = run(q, k, v)
    for o, g in zip(out[1:], grads[1:], strict=True):
        np.testing.assert_allclose(np.asarray(o), np.asarray(out[0]), rtol=1e-5, atol=1e-5)
        for a, b in zip(g, grads[0], strict=True):
            assert float(jnp.abs(b).max()) > 1e-3
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    if causal:  # the first query sees only the first key: its output is v_0
        np.testing.assert_allclose(np.asarray(out[1][:, 0]), np.asarray(v[:, 0]), rtol=1e-6)


@pytest.mark.parametrize("L,block_q,block_kv", [(16, 4, 4), (37, 8, 8), (37, 8, 5), (37, 5, 8),
                                                (24, 24, 7), (24, 7, 24)])
def test_causal_blockwise_equals_plain_attention_at_several_lengths_and_blocks(L, block_q,
                                                                                block_kv):
    B, H, Dh = 2, 3, 8
    ks = jax.random.split(jax.random.key(L + 100 * block_q + 10_000 * block_kv), 4)
    q, k, v = (2.0 * jax.random.normal(kk, (B, L, H, Dh)) for kk in ks[:3])
    w = jax.random.normal(ks[3], (B, L, H, Dh))

    def value_and_grads(fn):
        return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * w),
                                          argnums=(0, 1, 2)))(q, k, v)

    blockwise = lambda q, k, v: blockwise_attention(  # noqa: E731
        q, k, v, causal=True, block_q=block_q, block_kv=block_kv)
    out = jax.jit(blockwise)(q, k, v)
    np.testing.assert_allclose(np.asarray(out), np.asarray(
        jax.nn.dot_product_attention(q, k, v, is_causal=True)), rtol=1e-5, atol=1e-5)
    val, grads = value_and_grads(blockwise)
    ref_val, ref_grads = value_and_grads(
        lambda q, k, v: attention.matmul_attention(q, k, v, causal=True))
    # val = sum(out * w) over B*L*H*Dh terms of size ~1 that cancel to ~2: its rounding error
    # scales with float32 eps x sum |out * w|, not with |val|. Measured: at most 0.21 of that
    # bound over these cases (2.9e-5 at [24-7-24], which failed rtol 1e-5 on |val| = 2.12).
    np.testing.assert_allclose(float(val), float(ref_val), rtol=0,
                               atol=np.finfo(np.float32).eps * float(jnp.sum(jnp.abs(out * w))))
    for a, b in zip(grads, ref_grads, strict=True):
        assert float(jnp.abs(b).max()) > 1e-3
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("L,block_q,block_kv", [(1, 1, 1), (16, 4, 4), (37, 8, 5), (37, 5, 8),
                                                (24, 24, 7), (24, 7, 24), (30, 64, 64)])
def test_causal_key_blocks_are_exactly_the_blocks_with_a_visible_key(L, block_q, block_kv):
    bq, bk = min(block_q, L), min(block_kv, L)
    nq, nk = -(-L // bq), -(-L // bk)
    pos = np.arange(L)
    visible = pos[None, :] <= pos[:, None]  # [query, key]
    touched = np.zeros((nq, nk), bool)
    np.logical_or.at(touched, (pos[:, None] // bq, pos[None, :] // bk), visible)
    n = causal_key_blocks(L, bq, bk)
    assert n.shape == (nq,)
    expected = np.arange(nk)[None, :] < n[:, None]  # key blocks 0 .. n_i - 1
    np.testing.assert_array_equal(touched, expected)
    if nq > 1 and nk > 1:  # some block above the diagonal is skipped
        assert int(n.sum()) < nq * nk


@pytest.mark.parametrize("block_q,block_kv", [(8, 8), (8, 5), (5, 8)])
def test_causal_blockwise_never_reads_the_blocks_above_the_diagonal(block_q, block_kv):
    """NaN values and keys from key block t / bk on: a query block whose last query is before
    the end of block t / bk - 1 must not read them, so its outputs and dq stay finite and exact
    (computing a masked block would give 0 x NaN = NaN). Likewise NaN queries and output
    cotangents before query block s / bq: dk, dv of the keys from block ceil(s / bk) on, which
    no such query sees, stay finite and exact. The same blockwise attention without skipping
    gives NaN there."""
    B, L, H, Dh = 2, 37, 3, 8
    ks = jax.random.split(jax.random.key(block_q * 10 + block_kv), 4)
    q, k, v = (jax.random.normal(kk, (B, L, H, Dh)) for kk in ks[:3])
    w = jax.random.normal(ks[3], (B, L, H, Dh))
    pos = np.arange(L)
    nan = jnp.float32(jnp.nan)

    def run(q, k, v, w, skip=True):
        def loss(q, k, v):
            o = attention._attention(q, k, v, True, block_q, block_kv, skip)
            return jnp.sum(o * w), o
        grads, o = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
        return (o,) + grads

    ref_o, ref_dq, ref_dk, ref_dv = run(q, k, v, w)
    # forward and dq: keys and values NaN from t on
    t = 4 * block_kv
    last_query = np.minimum((pos // block_q + 1) * block_q, L) - 1  # of each query's block
    clean_q = (last_query // block_kv + 1) * block_kv <= t  # [L]
    assert 0 < clean_q.sum() <= t
    k_nan, v_nan = (x.at[:, t:].set(nan) for x in (k, v))
    o, dq, _, _ = run(q, k_nan, v_nan, w)
    for a, b in ((o, ref_o), (dq, ref_dq)):
        assert np.isfinite(np.asarray(a[:, clean_q])).all()
        np.testing.assert_allclose(np.asarray(a[:, clean_q]), np.asarray(b[:, clean_q]),
                                   rtol=1e-5, atol=1e-6)
    o_all, dq_all, _, _ = run(q, k_nan, v_nan, w, skip=False)
    assert np.isnan(np.asarray(o_all[:, clean_q])).any()
    assert np.isnan(np.asarray(dq_all[:, clean_q])).any()
    # dk, dv: queries and output cotangents NaN before s
    s = 2 * block_q
    clean_k = pos >= -(-s // block_kv) * block_kv  # [L]
    assert 0 < clean_k.sum() <= L - s
    q_nan, w_nan = (x.at[:, :s].set(nan) for x in (q, w))
    _, _, dk, dv = run(q_nan, k, v, w_nan)
    for a, b in ((dk, ref_dk), (dv, ref_dv)):
        assert np.isfinite(np.asarray(a[:, clean_k])).all()
        np.testing.assert_allclose(np.asarray(a[:, clean_k]), np.asarray(b[:, clean_k]),
                                   rtol=1e-5, atol=1e-6)
    _, _, dk_all, dv_all = run(q_nan, k, v, w_nan, skip=False)
    assert np.isnan(np.asarray(dk_all[:, clean_k])).any()
    assert np.isnan(np.asarray(dv_all[:, clean_k])).any()


def test_transformer_with_blockwise_attention_gives_the_same_logits():
    kw = dict(num_classes=7, input_vocab_size=8, num_layers=1, d_model=16, num_heads=2,
              cond_dim=8, causal=True)
    plain, blockwise = DiffusionTransformer(**kw), DiffusionTransformer(
        **kw, attention_impl="blockwise")
    inputs = example_inputs(plain, 2, 5)
    params = plain.init(jax.random.key(0), **inputs)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(kk, x.shape)
                                       for x, kk in zip(leaves, keys, strict=True)])
    x = jax.random.randint(jax.random.key(2), (2, 5), 0, 8)
    t = jnp.array([0.3, 0.8])
    small = DiffusionTransformer(**kw, attention_impl="blockwise", attention_block=2)
    a, b, c = jax.jit(lambda p: [m.apply({"params": p}, x, t)
                                 for m in (plain, blockwise, small)])(params)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)
    # config.model.attention_block reaches the attention: blocks of 2 on L = 5 (3 x 3 block
    # pairs, the last ones padded), same logits; the [.., 2, 2] score blocks are in its jaxpr
    np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-5, atol=1e-5)
    assert ",2,2]" in str(jax.make_jaxpr(lambda p: small.apply({"params": p}, x, t))(params))
    assert ",2,2]" not in str(jax.make_jaxpr(lambda p: blockwise.apply({"params": p}, x, t))(params))


def test_attention_impl_is_validated_and_names_allowed_values():
    config = synthetic_absorbing.get_config()
    config.model.attention_impl = "blockwise"
    assert get_model(config, 5, 6).attention_impl == "blockwise"
    config.model.attention_impl = "flash"
    for check in (lambda: config_validation.validate(config), lambda: get_model(config, 5, 6)):
        with pytest.raises(ValueError, match=r"config.model.attention_impl='flash'.*'blockwise'"):
            check()


@pytest.mark.parametrize("block", [0, -4, True])  # (a float: ConfigDict refuses it itself)
def test_attention_block_is_validated(block):
    config = synthetic_absorbing.get_config()
    config.model.attention_impl = "blockwise"
    config.model.attention_block = 64
    assert get_model(config, 5, 6).attention_block == 64
    config.model.attention_block = block
    for check in (lambda: config_validation.validate(config), lambda: get_model(config, 5, 6)):
        with pytest.raises(ValueError, match="config.model.attention_block"):
            check()
