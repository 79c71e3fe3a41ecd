"""Exact categorical sampling, and the logit transforms (temperature, top-k, nucleus).

Why not `jax.random.categorical(key, logits)`: its default float32 Gumbel noise comes from a
23-bit uniform, so the largest Gumbel value is about 16 and a class whose probability is below
about 1e-7 of the leading class is (almost) never drawn. Diffusion samplers with many steps draw
token classes of probability ~ (alpha_s - alpha_t) mu against a mask class of probability ~ 1, so
the tail of mu is cut away: the effective temperature drops (fhs_order_vadd_sedd.md section 1.3).

Here every draw uses 64 random bits per class through the exponential race

    y = argmax_k [ log p_k - log E_k ],   E_k ~ Exp(1) i.i.d.,                            (1)

with E computed in float32 from a 64-bit fixed-point uniform U = (n + 1/2) 2^-64 as
E = -log1p(-U) for U < 1/2 and E = -log(1 - U) = -log((~n + 1/2) 2^-64) otherwise, so both tails of
E are resolved to 2^-64 with float32's 24-bit relative precision: a class of probability p is
drawn at rate p for any p >> 2^-64 relative to the leading class. No float64 and no
`jax_enable_x64` is needed; the cost is two uint32 words per class. This is the same construction
as jax's float32 `mode="highest"` Gumbel; it is written out here so that `categorical_from_bits`
can be tested statistically on injected bits (see tests/test_sampling_categorical.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jnp.ndarray

# `config.sampler.categorical`: 'exact' (this module's 64-bit race, the default) or 'float32'
# (`jax.random.categorical`'s float32 Gumbel-max, kept only to reproduce its temperature bias).
METHODS = ("exact", "float32")

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


def categorical(key: Array, logits: Array, axis: int = -1, method: str = "exact") -> Array:
    """Draws one class per row of `logits` (unnormalized log-probabilities, -inf allowed) exactly.

    64 random bits per class; see the module docstring. Shape: `logits.shape` without `axis`.
    `method='float32'` uses `jax.random.categorical` (float32 Gumbel-max, 23-bit uniforms) instead:
    biased towards the leading classes; for ablations that reproduce that bias only.
    """
    if method == "float32":
        return jax.random.categorical(key, logits.astype(jnp.float32), axis=axis)
    if method != "exact":
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
