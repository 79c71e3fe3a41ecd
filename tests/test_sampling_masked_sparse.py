"""Masked ancestral sampling as unmask-then-draw, and logits only where a token is drawn.

The law of the ancestral sampler's output is enumerated exactly (float64, all 4^3 states of a
K = 3, L = 3 masked chain) for a network that is *not* the exact model (time-conditioned, reading
the whole x_t), with the step of the papers: a masked token stays masked with probability
(1 - alpha_s)/(1 - alpha_t), else takes a value from mu_theta(x_t, t). The sampler, which draws the
unmasking first, calls the network only if something unmasks and asks for logits only there, must
sample that law (total variation at the multinomial noise floor), through both of its branches.
"""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion import sampling
from discrete_diffusion.sampling import ancestral
from discrete_diffusion.testing import oracle

K, L, STEPS, N = 3, 3, 3, 20_000
V = K + 1
_rng = np.random.default_rng(0)
A, BM, CT, D = (_rng.normal(size=(L, K)), _rng.normal(size=K), 2 * _rng.normal(size=K),
                _rng.normal(size=(V, K)))


def _logits(x, t, xp):
    """A time-conditioned network reading all of x_t: [N, L] ids, t [N] -> [N, L, K]."""
    n_masked = (x == K).sum(-1)[:, None, None] / L
    right = xp.roll(x, -1, axis=-1)
    return (xp.asarray(A)[None] + xp.asarray(BM) * n_masked + xp.asarray(CT) * t[:, None, None]
            + xp.asarray(D)[right])


def model_fn(x, t):
    return _logits(x, t, jnp).astype(jnp.float32)


TRACED_P = []


def model_fn_at(x, t, output_positions=None):
    full = model_fn(x, t)
    if output_positions is None:
        return full
    TRACED_P.append(output_positions.shape[1])
    return jnp.take_along_axis(full, output_positions[..., None], axis=1)


def _config(**sampler):
    return ml_collections.ConfigDict({
        "process": {"name": "masked", "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser", "time_conditioning": True},
        "sampler": {"name": "ancestral", "num_steps": STEPS, **sampler},
    })


def exact_law() -> np.ndarray:
    """The law of x_0 after STEPS steps of the papers' step, `[K^L]` (row-major)."""
    states = np.array(list(itertools.product(range(V), repeat=L)))
    index = {tuple(s): i for i, s in enumerate(states)}
    law = np.zeros(len(states))
    law[index[(K,) * L]] = 1.0
    grid = np.linspace(1.0, 0.0, STEPS + 1)
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        a_t, a_s = 1.0 - t, 1.0 - s
        logits = _logits(states, np.full(len(states), t), np)
        mu = np.exp(logits - logits.max(-1, keepdims=True))
        mu /= mu.sum(-1, keepdims=True)
        kern = np.zeros((len(states), L, V))
        kern[..., :K] = (a_s - a_t) / (1 - a_t) * mu
        kern[..., K] = (1 - a_s) / (1 - a_t)
        clean = states < K
        kern[clean] = np.eye(V)[states[clean]]
        new = np.zeros_like(law)
        for i, x_s in enumerate(states):
            new[i] = np.sum(law * np.prod(kern[:, np.arange(L), x_s], axis=-1))
        law = new
    assert np.allclose(law.sum(), 1.0)
    keep = (states < K).all(-1)
    assert np.allclose(law[keep].sum(), 1.0)  # alpha(0) = 1: everything unmasked
    return law[keep]  # itertools order over 0..K-1 per position = row-major K^L


# (None, model_fn): P = L, the dense branch only; (1, model_fn_at): both branches, logits through
# output_positions (the gather fallback is checked against it in the first-hitting test below).
@pytest.mark.parametrize("capacity,fn", [(None, model_fn), (1, model_fn_at)])
def test_unmask_then_draw_samples_the_dense_step_law(capacity, fn):
    target = exact_law()
    ctx = sampling.make_context(fn, _config(), N, L)
    TRACED_P.clear()
    tokens, nfe = jax.jit(lambda k: ancestral.run_masked(k, ctx, capacity))(jax.random.key(0))
    tv = oracle.total_variation(oracle.empirical_law(np.asarray(tokens), K), target)
    assert tv < 1.5 * oracle.expected_tv_floor(target, N), tv
    assert int(nfe) == STEPS  # N = 20000 sequences: something unmasks at every step
    if fn is model_fn_at:
        assert TRACED_P == [1]  # the sparse branch asked for one position per sequence


def test_no_network_call_when_nothing_unmasks():
    """Batch 1, 64 steps, L = 3: a time-conditioned network is called at most L times."""
    result = dd.generate(jax.random.key(3), model_fn, _config(num_steps=64), 1, L)
    assert 1 <= result.nfe <= L
    assert np.asarray(result.tokens).max() < K


def test_capacity():
    assert ancestral.unmask_capacity(1024, 1024) == 8
    assert ancestral.unmask_capacity(1024, 128) == 32
    assert ancestral.unmask_capacity(3, 1) == 3


def test_first_hitting_with_output_positions_draws_the_same_tokens():
    """The same key gives the same tokens whether the model_fn computes logits at the drawn
    positions only (output_positions) or everywhere (a model_fn without the keyword)."""
    config = _config()
    config.sampler = {"name": "first_hitting"}
    TRACED_P.clear()
    a = dd.generate(jax.random.key(5), model_fn_at, config, 64, L)
    b = dd.generate(jax.random.key(5), model_fn, config, 64, L)
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    assert a.nfe == b.nfe == L and TRACED_P == [1]
