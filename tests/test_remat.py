"""Rematerialisation (`models/remat.py`, `config.model.remat`): the compiled gradient keeps less
scratch memory than without it (where `jax.checkpoint` keeps as much on CPU), and values and
gradients, dropout masks included, are those of the plain blocks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from discrete_diffusion.models.remat import remat_after_cotangent, remat_module


def _layer(w, x):
    return jnp.tanh(jnp.tanh(x @ w) @ w.T) + x  # keeps an [N, 4 D] intermediate


def _temp_bytes(wrap) -> int:
    def net(ws, x):
        f = wrap(_layer)
        for w in ws:
            x = f(w, x)
        return jnp.sum(x)

    ws = [jax.ShapeDtypeStruct((64, 256), jnp.float32)] * 6
    x = jax.ShapeDtypeStruct((512, 64), jnp.float32)
    return jax.jit(jax.grad(net)).lower(ws, x).compile().memory_analysis().temp_size_in_bytes


def test_remat_lowers_the_compiled_scratch_memory():
    plain = _temp_bytes(lambda f: f)
    ours = _temp_bytes(remat_after_cotangent)
    assert ours < 0.5 * plain, (ours, plain)  # 6 layers' intermediates -> about one layer's


def test_remat_after_cotangent_gives_the_same_values_and_gradients():
    ks = jax.random.split(jax.random.key(0), 3)
    w, x = jax.random.normal(ks[0], (8, 32)), jax.random.normal(ks[1], (16, 8))

    def loss(wrap):
        return lambda w, x: jnp.sum(wrap(_layer)(w, wrap(_layer)(w, x)) ** 2)

    a = jax.jit(jax.value_and_grad(loss(lambda f: f), argnums=(0, 1)))(w, x)
    b = jax.jit(jax.value_and_grad(loss(remat_after_cotangent), argnums=(0, 1)))(w, x)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        # float32 rounding of a different summation order, relative to the leaf's largest entry
        # (gradients here reach ~30); a wrong recomputation is off by O(1)
        scale = float(np.max(np.abs(np.asarray(u))))
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-5, atol=1e-5 * scale)


class _Scaled(nn.Module):
    """x * w, then dropout: the cheapest module whose gradient depends on its dropout mask."""

    @nn.compact
    def __call__(self, x, deterministic):
        w = self.param("w", nn.initializers.normal(1.0), (x.shape[-1],))
        return nn.Dropout(0.5, deterministic=deterministic)(jnp.tanh(x * w))


class _Stack(nn.Module):
    remat: bool

    @nn.compact
    def __call__(self, x, deterministic):
        cls = remat_module(_Scaled, static_argnums=(2,)) if self.remat else _Scaled
        for i in range(2):
            x = cls(name=f"blocks_{i}")(x, deterministic)
        return x


def test_remat_module_same_parameters_and_dropout_gradients():
    """The recomputation draws the forward pass's dropout masks: equal gradients with dropout on
    (a different mask in the backward pass changes them by O(1)). The DiT's blocks
    (`DiTBlock`, static_argnums=(3,)) are checked in test_models / test_sharding."""
    x = jax.random.normal(jax.random.key(0), (4, 32))
    p_plain = _Stack(False).init(jax.random.key(2), x, True)["params"]
    p_remat = _Stack(True).init(jax.random.key(2), x, True)["params"]
    assert jax.tree.structure(p_plain) == jax.tree.structure(p_remat)

    @jax.jit
    def grads(params):
        def loss(remat):
            return lambda p: jnp.sum(_Stack(remat).apply(
                {"params": p}, x, False, rngs={"dropout": jax.random.key(5)}) ** 2)
        return [jax.value_and_grad(loss(r))(params) for r in (False, True)]

    (v0, g0), (v1, g1) = grads(p_plain)
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        assert float(jnp.abs(a).max()) > 0
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
