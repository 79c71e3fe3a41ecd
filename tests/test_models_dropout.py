"""models/dropout.py: the written-out Threefry gives jax's bits, `bernoulli` jax's draws and
`Dropout` flax's masks, bit for bit; the CPU program has no loop left."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models import dropout as dropout_module
from discrete_diffusion.models import layers, recognition
from discrete_diffusion.models.dropout import Dropout, bernoulli, flat_index, threefry_bits

KEYS = {
    "typed": jax.random.key(5),
    "raw": jax.random.PRNGKey(9),
    "folded": jax.random.fold_in(jax.random.key(1), 3),
}
SHAPES = [(1,), (3, 5), (2, 7, 33), (4, 1, 8), (2, 3, 4, 5)]


def test_threefry2x32_known_answer():
    """The Random123 known-answer vectors of Threefry-2x32 with 20 rounds (its kat_vectors file:
    counter and key zero, all ones, and the digits of pi), arguments (k1, k2, x1, x2)."""
    zero = np.uint32(0)
    y = threefry2x32_np(zero, zero, zero, zero)
    assert y == (0x6B200159, 0x99BA4EFE)
    ones = np.uint32(0xFFFFFFFF)
    assert threefry2x32_np(ones, ones, ones, ones) == (0x1CB996FC, 0xBB002BE7)
    assert threefry2x32_np(0x13198A2E, 0x03707344, 0x243F6A88, 0x85A308D3) == (0xC4923A9C,
                                                                             0x483DF7A0)


def threefry2x32_np(k1, k2, x1, x2) -> tuple[int, int]:
    y1, y2 = jax.jit(dropout_module.threefry2x32)(*(jnp.uint32(v) for v in (k1, k2, x1, x2)))
    return int(y1), int(y2)


@pytest.mark.parametrize("shape", SHAPES)
def test_flat_index_is_the_row_major_position(shape):
    np.testing.assert_array_equal(np.asarray(flat_index(shape)),
                                  np.arange(np.prod(shape), dtype=np.uint32).reshape(shape))


@pytest.mark.parametrize("name", sorted(KEYS))
@pytest.mark.parametrize("shape", SHAPES)
def test_bits_and_draws_equal_jax_random(name, shape):
    key = KEYS[name]
    np.testing.assert_array_equal(np.asarray(jax.jit(threefry_bits, static_argnums=1)(key, shape)),
                                  np.asarray(jax.random.bits(key, shape, jnp.uint32)))
    for p in (0.9, 0.5, 1e-3):
        ours = jax.jit(lambda k, p=p: bernoulli(k, p, shape))(key)
        np.testing.assert_array_equal(np.asarray(ours),
                                      np.asarray(jax.random.bernoulli(key, p, shape)))


def test_draws_under_vmap_equal_jax_random():
    keys = jax.random.split(jax.random.key(0), 3)
    ours = jax.jit(jax.vmap(lambda k: bernoulli(k, 0.5, (64,))))(keys)
    theirs = jax.vmap(lambda k: jax.random.bernoulli(k, 0.5, (64,)))(keys)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_draw_frequency_matches_p():
    """Not just equal to jax: about p of 2^20 draws are True (5 standard deviations)."""
    p, n = 0.9, 1 << 20
    frac = float(jnp.mean(jax.jit(lambda k: bernoulli(k, p, (n,)))(jax.random.key(7))))
    assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("broadcast_dims", [(), (1,), (0, 2)])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_equals_flax(broadcast_dims, rate):
    x = jax.random.normal(jax.random.key(0), (4, 64, 8))
    rngs = {"dropout": jax.random.key(2)}
    ours = Dropout(rate, broadcast_dims=broadcast_dims).apply({}, x, deterministic=False,
                                                             rngs=rngs)
    theirs = nn.Dropout(rate, broadcast_dims=broadcast_dims).apply({}, x, deterministic=False,
                                                                   rngs=rngs)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert 0 < float(jnp.mean(ours == 0)) < 1
    np.testing.assert_array_equal(
        np.asarray(Dropout(rate).apply({}, x, deterministic=True)), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(Dropout(1.0).apply({}, x, deterministic=False)), 0)


def test_other_key_implementations_use_jax_random():
    key = jax.random.key(3, impl="rbg")
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: bernoulli(k, 0.7, (5, 9)))(key)),
                                  np.asarray(jax.random.bernoulli(key, 0.7, (5, 9))))


def test_cpu_program_has_no_loop():
    """jax's CPU lowering of Threefry is a while loop over whole arrays; the written-out one is
    not (what makes it faster: `benchmarks/dropout_bits.py`)."""
    def text(f):
        return jax.jit(f).lower(jax.random.key(0)).compile().as_text()

    assert "while" in text(lambda k: jax.random.bernoulli(k, 0.9, (64, 64)))
    assert "while" not in text(lambda k: bernoulli(k, 0.9, (64, 64)))


def _block_and_args(name: str):
    x = jax.random.normal(jax.random.key(0), (2, 8, 16))
    cond = jax.random.normal(jax.random.key(1), (2, 1, 8))
    if name == "layers":
        return layers, layers.DiTBlock(num_heads=2, dropout=0.3), (x, cond)
    m = jnp.ones((2, 8, 1))
    return recognition, recognition.MaskedAdaLNBlock(num_heads=2, dropout=0.3), (x, cond, m)


@pytest.mark.parametrize("name", ["layers", "recognition"])
def test_blocks_draw_flax_masks(name, monkeypatch):
    """The diffusion model's and the recognition model's blocks in train mode give the same
    output with this Dropout as with flax's (and a different one without dropout)."""
    module, block, args = _block_and_args(name)
    params = block.init(jax.random.key(2), *args, True)
    # adaLN is zero-initialised (gates 0): perturb it so the dropped branches reach the output.
    params = jax.tree.map(lambda p: p + 0.1, params)
    rngs = {"dropout": jax.random.key(3)}
    ours = block.apply(params, *args, False, rngs=rngs)
    assert not np.allclose(np.asarray(ours), np.asarray(block.apply(params, *args, True)))
    monkeypatch.setattr(module, "Dropout", nn.Dropout)
    theirs = block.apply(params, *args, False, rngs=rngs)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
