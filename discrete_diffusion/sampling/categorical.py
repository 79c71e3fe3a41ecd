"""Exact categorical sampling, and the logit transforms (temperature, top-k, nucleus).

Why not `jax.random.categorical(key, logits)`: its default float32 Gumbel noise comes from a
23-bit uniform, so the largest Gumbel value is about 16 and a class whose probability is below
about 1e-7 of the leading class is (almost) never drawn. Diffusion samplers with many steps draw
token classes of probability ~ (alpha_s - alpha_t) mu against a mask class of probability ~ 1, so
the tail of mu is cut away: the effective temperature drops (fhs_order_vadd_sedd.md section 1.3).

The exact draws use 64 random bits per raced class, through the exponential race

    y = argmax_k [ log p_k - log E_k ],   E_k ~ Exp(1) i.i.d.,                            (1)

with E computed in float32 from a 64-bit fixed-point uniform U = (n + 1/2) 2^-64 as
E = -log1p(-U) for U < 1/2 and E = -log(1 - U) = -log((~n + 1/2) 2^-64) otherwise, so both tails of
E are resolved to 2^-64 with float32's 24-bit relative precision: a class of probability p is
drawn at rate p for any p >> 2^-64 relative to the leading class. No float64 and no
`jax_enable_x64` is needed; the cost is two uint32 words per class. This is the same construction
as jax's float32 `mode="highest"` Gumbel; it is written out here so that `categorical_from_bits`
can be tested statistically on injected bits (see tests/test_sampling_categorical.py).

The default draw ('exact') runs race (1) in two levels, so that it needs 64 random bits for
sqrt(V)-many classes instead of all V (`categorical_blocked`). The V classes are split into
blocks of B consecutive classes (the last one padded with -inf), and

    S_b = log sum_{k in b} exp(logit_k)                 (per-block logsumexp, float32)
    b*  = argmax_b [ S_b - log E_b ],      E_b ~ Exp(1) from 64 bits             (2)
    k*  = argmax_{k in b*} [ logit_k - log E'_k ],  E'_k ~ Exp(1) from 64 bits

so P(b*) = exp(S_b) / sum exp(S) and P(k* | b*) = p_k / exp(S_b*): the product is p_k, the same
law as (1), with the same resolution of the tail (a class of tiny mass either lies in a block of
tiny mass, resolved by the first race, or is resolved inside its block by the second). The only
arithmetic beyond (1) is the float32 sum inside a block, relative error <= B 2^-24 on each block
mass (about 1e-6 in practice), far below what any sampling test can see. It costs one exp per
class and two reductions, against the two logs and 32 random bits per class of
`jax.random.categorical` (benchmarks/categorical_sampling.py). 'exact_dense' keeps (1) on every
class (the former default). Probabilities instead of logits: `categorical_probs` forms the block
masses by plain sums, with no exp at all.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jnp.ndarray

# `config.sampler.categorical`: 'exact' (the two-level 64-bit race (2), the default),
# 'exact_dense' (race (1) over every class: the same law at a higher cost, the former default) or
# 'float32' (`jax.random.categorical`'s float32 Gumbel-max, kept only to reproduce its bias).
METHODS = ("exact", "exact_dense", "float32")

_TWO_M32 = 2.0**-32
_TWO_M64 = 2.0**-64


def _u64_to_float(hi: Array, lo: Array) -> Array:
    """(hi 2^32 + lo + 1/2) 2^-64 as float32 (relative error <= 2^-24 at every scale)."""
    hi_f = hi.astype(jnp.float32) * _TWO_M32
    lo_f = (lo.astype(jnp.float32) + 0.5) * _TWO_M64
    return hi_f + lo_f


def exponential_from_bits(bits: Array) -> Array:
    """Exp(1) noise from 64 random bits. `bits`: uint32 `[2, ...]` (high word, low word) -> f32."""
    hi, lo = bits[0], bits[1]
    small = hi < jnp.uint32(1 << 31)  # U < 1/2
    u = _u64_to_float(hi, lo)  # U, precise near 0
    one_minus_u = _u64_to_float(~hi, ~lo)  # 1 - U, precise near 0
    return jnp.where(small, -jnp.log1p(-u), -jnp.log(one_minus_u))


def categorical_from_bits(bits: Array, logits: Array, axis: int = -1) -> Array:
    """Equation (1) on given random bits `[2, *logits.shape]`; returns int32 class indices."""
    e = exponential_from_bits(bits)
    race = logits.astype(jnp.float32) - jnp.log(e)
    return jnp.argmax(race, axis=axis).astype(jnp.int32)


def block_size(num_classes: int) -> int:
    """B of (2): the smallest power of two >= sqrt(V), so both races see about sqrt(V) classes."""
    return 1 << max(0, math.ceil(math.log2(max(num_classes, 1)) / 2))


def _blocks(x: Array, block: int, fill: float) -> Array:
    """`[..., V]` -> `[..., ceil(V / B), B]`, the last block padded with `fill`."""
    num_classes = x.shape[-1]
    pad = -num_classes % block
    if pad:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], constant_values=fill)
    return x.reshape(x.shape[:-1] + (x.shape[-1] // block, block))


def blocked_from_bits(outer_bits: Array, inner_bits: Array, blocks: Array,
                      log_block_mass: Array, inner_logits=None) -> Array:
    """Race (2) on given random bits: `outer_bits` uint32 `[2, ..., nb]` for the block race,
    `inner_bits` `[2, ..., B]` for the race inside the chosen block; `blocks` `[..., nb, B]` (the
    logits, or what `inner_logits` maps to logits, e.g. log for probabilities),
    `log_block_mass` `[..., nb]` = S_b. Returns int32 class indices b* B + k*."""
    b = categorical_from_bits(outer_bits, log_block_mass)  # [...]
    inner = jnp.take_along_axis(blocks, b[..., None, None], axis=-2)[..., 0, :]  # [..., B]
    if inner_logits is not None:
        inner = inner_logits(inner)
    k = categorical_from_bits(inner_bits, inner)
    return b * blocks.shape[-1] + k


def _blocked(key: Array, blocks: Array, log_block_mass: Array, inner_logits=None) -> Array:
    k_outer, k_inner = jax.random.split(key)
    outer = jax.random.bits(k_outer, (2,) + log_block_mass.shape, dtype=jnp.uint32)
    inner = jax.random.bits(k_inner, (2,) + blocks.shape[:-2] + blocks.shape[-1:],
                            dtype=jnp.uint32)
    return blocked_from_bits(outer, inner, blocks, log_block_mass, inner_logits)


def _log(probs: Array) -> Array:
    return jnp.where(probs > 0, jnp.log(jnp.maximum(probs, 1e-38)), -jnp.inf)


def block_logsumexp(block_logits: Array) -> Array:
    """S_b of (2): `[..., nb, B]` -> `[..., nb]` (-inf for a block of -inf logits)."""
    m = jnp.max(block_logits, axis=-1)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(jnp.sum(jnp.exp(block_logits - m[..., None]), axis=-1))


def categorical_blocked(key: Array, logits: Array, block: int | None = None) -> Array:
    """Equation (2) along the last axis of `logits` (unnormalized log-probabilities, -inf
    allowed): one exact draw per row, int32 of shape `logits.shape[:-1]`. `block`: B (default
    `block_size(V)`)."""
    logits = logits.astype(jnp.float32)
    blocks = _blocks(logits, block or block_size(logits.shape[-1]), -jnp.inf)
    return _blocked(key, blocks, block_logsumexp(blocks))


def categorical_probs(key: Array, probs: Array, method: str = "exact",
                      block: int | None = None) -> Array:
    """One draw per row of probabilities `probs` `[..., V]` (non-negative, any total; zero
    entries are never drawn). 'exact': (2) with block masses summed directly from `probs`
    (float32 sums, no exp); other methods: `categorical` on log `probs`."""
    probs = probs.astype(jnp.float32)
    if method != "exact":
        return categorical(key, _log(probs), method=method)
    blocks = _blocks(probs, block or block_size(probs.shape[-1]), 0.0)
    return _blocked(key, blocks, _log(jnp.sum(blocks, axis=-1)), inner_logits=_log)


def categorical(key: Array, logits: Array, axis: int = -1, method: str = "exact") -> Array:
    """Draws one class per row of `logits` (unnormalized log-probabilities, -inf allowed) exactly.

    'exact' (default): the two-level race (2), 64 random bits for about 2 sqrt(V) classes;
    'exact_dense': race (1), 64 random bits per class (the same law; see the module docstring).
    Shape: `logits.shape` without `axis`. `method='float32'` uses `jax.random.categorical`
    (float32 Gumbel-max, 23-bit uniforms) instead: biased towards the leading classes; for
    ablations that reproduce that bias only.
    """
    if method == "float32":
        return jax.random.categorical(key, logits.astype(jnp.float32), axis=axis)
    if method == "exact":
        return categorical_blocked(key, jnp.moveaxis(logits, axis, -1))
    if method != "exact_dense":
        raise ValueError(f"config.sampler.categorical={method!r} is not one of {list(METHODS)}")
    bits = jax.random.bits(key, (2,) + logits.shape, dtype=jnp.uint32)
    return categorical_from_bits(bits, logits, axis=axis)


def transform_logits(
    logits: Array, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> Array:
    """Temperature, top-k and nucleus (top-p) filtering of a network's output distribution.

        log p_T = log_softmax(logits / T);  keep the k most likely classes (k > 0);
        keep the smallest set of most likely classes whose mass reaches top_p (top_p < 1).

    Filtered classes get -inf. Samplers apply this to the network's output (denoiser or LOO
    logits), never to a reverse posterior: truncating a posterior that puts most mass on "stay
    masked" would remove the unmasking moves.
    """
    if temperature <= 0:
        raise ValueError(f"config.sampler.temperature={temperature!r} must be > 0")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"config.sampler.top_p={top_p!r} must be in (0, 1]")
    logits = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    if top_k and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, -jnp.inf)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        mass_before = jnp.cumsum(jnp.exp(sorted_logits), axis=-1) - jnp.exp(sorted_logits)
        # The threshold is the smallest kept logit: classes whose preceding mass is < top_p.
        kept = jnp.where(mass_before < top_p, sorted_logits, jnp.inf)
        threshold = jnp.min(kept, axis=-1, keepdims=True)
        logits = jnp.where(logits >= threshold, logits, -jnp.inf)
    return jax.nn.log_softmax(logits, axis=-1)
