"""log_prob.log_softmax_at: the forward pass equals the gather of jax.nn.log_softmax bit for bit,
its gradient equals autodiff's (and the exact 1[k = i] - softmax_k) to float32 rounding, it works
under jit, vmap, checkpointed chunks and with -inf logits, and its compiled backward pass writes
no scatter."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.log_prob import log_softmax_at


def _reference(logits, index):
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), index[..., None], axis=-1)[
        ..., 0]


def _inputs(seed, shape, k, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(scale * rng.standard_normal(shape + (k,)), jnp.float32)
    index = jnp.asarray(rng.integers(0, k, shape), jnp.int32)
    weight = jnp.asarray(rng.uniform(0.0, 2.0, shape), jnp.float32)
    return logits, index, weight


@pytest.mark.parametrize("shape,k", [((7,), 5), ((3, 11), 64), ((2, 4, 9), 1001)])
def test_forward_is_bitwise_the_gather_of_log_softmax(shape, k):
    logits, index, _ = _inputs(0, shape, k)
    np.testing.assert_array_equal(jax.jit(log_softmax_at)(logits, index),
                                  jax.jit(_reference)(logits, index))


@pytest.mark.parametrize("shape,k", [((7,), 5), ((3, 11), 64), ((2, 4, 9), 1001)])
def test_gradient_equals_autodiff_and_the_exact_formula(shape, k):
    logits, index, weight = _inputs(1, shape, k)

    def loss(f):
        return jax.jit(jax.grad(lambda x: jnp.sum(weight * f(x, index))))(logits)

    ours, ref = loss(log_softmax_at), loss(_reference)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    # exact: w (1[k = index] - softmax_k), in float64
    x = np.asarray(logits, np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.arange(k) == np.asarray(index)[..., None]
    exact = np.asarray(weight, np.float64)[..., None] * (onehot - p)
    np.testing.assert_allclose(ours, exact, rtol=1e-5, atol=1e-6)


def test_minus_inf_logits_vmap_and_checkpointed_chunks():
    logits, index, weight = _inputs(2, (4, 6), 12)
    logits = logits.at[..., 0].set(-jnp.inf)  # a class the model rules out
    index = jnp.where(index == 0, 1, index)
    lp = log_softmax_at(logits, index)
    assert np.all(np.isfinite(lp))
    np.testing.assert_array_equal(lp, _reference(logits, index))
    g = jax.grad(lambda x: jnp.sum(log_softmax_at(x, index)))(logits)
    np.testing.assert_allclose(g, jax.grad(lambda x: jnp.sum(_reference(x, index)))(logits),
                               rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(g)[..., 0] == 0.0)
    # the index of a ruled-out class: -inf, as the reference
    assert float(log_softmax_at(logits[0, 0], jnp.int32(0))) == -np.inf
    # vmap over rows and a rematerialised lax.map over chunks, as methods/chunked.py runs it
    np.testing.assert_array_equal(jax.vmap(log_softmax_at)(logits, index), lp)
    f = jax.checkpoint(lambda x, i: jnp.sum(log_softmax_at(x, i)))
    g_chunks = jax.grad(lambda x: jnp.sum(jax.lax.map(lambda a: f(*a), (x, index))))(logits)
    np.testing.assert_allclose(g_chunks, g, rtol=1e-6, atol=1e-7)


def test_backward_pass_writes_no_scatter():
    """Autodiff of the gather scatters the cotangent into a zero [..., K] array; this one does
    not (the whole point; the reference's count shows the check can fail). Counted in the
    program handed to XLA, before its optimisations."""
    logits, index, weight = _inputs(3, (2, 16), 257)

    def scatters(f):
        step = jax.jit(jax.grad(lambda x: jnp.sum(weight * f(x, index))))
        return len(re.findall(r"stablehlo\.scatter", step.lower(logits).as_text()))

    assert scatters(_reference) > 0
    assert scatters(log_softmax_at) == 0
