"""Blockwise (flash-style) attention (`models/attention.py`, `attention_impl='blockwise'`): values
and gradients equal `jax.nn.dot_product_attention`'s, bidirectional and causal, with blocks that
do not divide L; the transformer gives the same logits with it; the config field is validated."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic_absorbing
from discrete_diffusion import config_validation
from discrete_diffusion.models import DiffusionTransformer, example_inputs, get_model
from discrete_diffusion.models.attention import blockwise_attention


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
