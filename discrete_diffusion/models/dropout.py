"""Dropout whose mask is drawn bit for bit as `flax.linen.Dropout` draws it, faster on the CPU.

    h = Dropout(rate, deterministic=not train)(h)       # in a module, with a 'dropout' rng

    keep = bernoulli(key, 1 - rate, shape),   h' = where(keep, h / (1 - rate), 0)

`flax.linen.Dropout` draws `keep` with `jax.random.bernoulli`, i.e. with the Threefry-2x32 hash
(Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") of each element's index:

    (y1, y2) = threefry2x32((k1, k2), (hi(i), lo(i))),   bits = y1 ^ y2     (i: flat index, 64 bits)
    u = float32(bits >> 9 | bits(1.0)) - 1  in [0, 1),   keep = u < 1 - rate

(jax's partitionable Threefry, `jax_threefry_partitionable`, its default). On the CPU jax lowers
the hash's 20 rounds as a rolled loop of 5 iterations (to compile faster), which XLA:CPU runs as a
loop over whole arrays with the hash's state in memory between iterations. Written out
(`threefry2x32`), the rounds fuse into one vectorised loop with the mask and the select, and give
the same bits. So `bernoulli` here equals `jax.random.bernoulli` bit for bit
(`tests/test_models_dropout.py`), and `Dropout` equals `flax.linen.Dropout` on the same rngs.
A dropout forward and backward pass over float32 [32, 256, 256] (the small model's activations)
takes 0.50x jax's time on the 2-core Xeon, over [2, 1024, 768] 0.40x
(`benchmarks/dropout_bits.py`); the small model's train step 0.963x, the 12-layer model's 0.988x
(`benchmarks/compare_train_step.py`, docs/benchmarks_perf.md).

Where the written-out rounds are used: on the CPU (`jax.lax.platform_dependent`), for Threefry
keys, with `jax_threefry_partitionable` on and under 2^32 elements. Everywhere else (GPU and TPU,
which jax lowers to their own Threefry kernels, other key implementations) `bernoulli` is
`jax.random.bernoulli` itself.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Threefry-2x32 with 20 rounds: rotation constants of the even and odd groups of four rounds, and
# the key schedule's parity constant (Salmon et al. 2011, Table 4 / the Skein specification).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: Array, d: int) -> Array:
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
    """Threefry-2x32, 20 rounds, of the counter pair (x1, x2) under the key (k1, k2), all uint32:

        ks = (k1, k2, k1 ^ k2 ^ 0x1BD11BDA);   x1 += ks0;   x2 += ks1
        for g = 0..4:  4 rounds of  x1 += x2;  x2 = rotl(x2, R[g % 2][r]) ^ x1
                       x1 += ks[(g + 1) % 3];  x2 += ks[(g + 2) % 3] + g + 1

    written out, so that XLA fuses it into the loop that consumes its output."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for g in range(5):
        for r in _ROTATIONS[g % 2]:
            x1 = x1 + x2
            x2 = _rotate_left(x2, r) ^ x1
        x1 = x1 + ks[(g + 1) % 3]
        x2 = x2 + ks[(g + 2) % 3] + np.uint32(g + 1)
    return x1, x2


def flat_index(shape: tuple[int, ...]) -> Array:
    """uint32 `shape` array of each element's row-major index (the low word of jax's counter;
    its high word is 0 below 2^32 elements). Built from per-axis iotas, as jax builds its own,
    so that a sharded array's counters are computed where its shards are."""
    strides = np.cumprod((1,) + tuple(shape[::-1]))[::-1][1:]
    index = jnp.zeros(shape, jnp.uint32)
    for axis, stride in enumerate(strides):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
    return index


def threefry_bits(key: Array, shape: tuple[int, ...]) -> Array:
    """uint32 `shape` random bits equal to `jax.random.bits(key, shape, jnp.uint32)` for a
    Threefry key (partitionable Threefry, fewer than 2^32 elements): y1 ^ y2 of each element's
    hash (module doc)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    k1, k2 = data[..., 0], data[..., 1]
    y1, y2 = threefry2x32(k1, k2, jnp.zeros(shape, jnp.uint32), flat_index(shape))
    return y1 ^ y2


def _written_out_applies(key: Array, shape: tuple[int, ...]) -> bool:
    if math.prod(shape) >= 2**32 or not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == "threefry2x32"
    return key.dtype == jnp.uint32 and key.shape[-1:] == (2,) and (
        jax.config.jax_default_prng_impl == "threefry2x32")


def bernoulli_written_out(key: Array, p: float, shape: tuple[int, ...]) -> Array:
    """u < p with u = float32(bits >> 9 | bits(1.0)) - 1: `jax.random.bernoulli`'s 'low' mode."""
    bits = threefry_bits(key, shape)
    one = np.array(1.0, np.float32).view(np.uint32)
    u = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | one, jnp.float32) - jnp.float32(1)
    return jnp.maximum(jnp.float32(0), u) < jnp.float32(p)


def bernoulli(key: Array, p: float, shape: tuple[int, ...]) -> Array:
    """Boolean `shape` array, True with probability p: `jax.random.bernoulli(key, p, shape)` bit
    for bit, with the hash written out on the CPU (module doc)."""
    shape = tuple(int(d) for d in shape)
    if not _written_out_applies(key, shape):
        return jax.random.bernoulli(key, p, shape)
    return jax.lax.platform_dependent(
        key, cpu=lambda k: bernoulli_written_out(k, p, shape),
        default=lambda k: jax.random.bernoulli(k, p, shape))


class Dropout(nn.Module):
    """`flax.linen.Dropout` (same fields, same rng stream, same mask and values) drawing its mask
    with `bernoulli`: where(keep, x / (1 - rate), 0), keep ~ Bernoulli(1 - rate) per element (one
    draw shared along `broadcast_dims`)."""

    rate: float
    broadcast_dims: tuple[int, ...] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, inputs: Array, deterministic: bool | None = None,
                 rng: Array | None = None) -> Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        shape = tuple(1 if i in self.broadcast_dims else d for i, d in enumerate(inputs.shape))
        keep = jnp.broadcast_to(bernoulli(rng, keep_prob, shape), inputs.shape)
        return jax.lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
