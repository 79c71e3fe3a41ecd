"""fused_adamw.guarded_adamw against optax's chain (optimizer.make_optimizer, then the EMA) on
random trees, the skip of a non-finite step bit for bit, the generic guarded_update path, the clip
against optax's, and the passes over the parameters that XLA compiles the step to."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from discrete_diffusion.training import fused_adamw, global_norm, guarded_update, optimizer


def _tc(**overrides) -> ml_collections.ConfigDict:
    tc = dict(learning_rate=1e-2, warmup_steps=2, lr_schedule="constant", weight_decay=0.0,
              clip_norm=1.0, num_steps=10, adam_b1=0.9, adam_b2=0.99)
    tc.update(overrides)
    return ml_collections.ConfigDict(tc)


def _tree(key: jax.Array, scale: float = 1.0) -> dict:
    """Leaves of repeated shapes (one reduction per shape) and a scalar."""
    k = jax.random.split(key, 4)
    return {"a": scale * jax.random.normal(k[0], (3, 5)),
            "b": {"c": scale * jax.random.normal(k[1], (3, 5)),
                  "d": scale * jax.random.normal(k[2], (7,))},
            "e": scale * jax.random.normal(k[3], ())}


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("clip_norm,weight_decay,decay",
                         [(1.0, 0.0, 0.9), (0.0, 0.1, 0.0), (30.0, 0.1, 0.99)])
def test_equals_optax_chain_then_ema(clip_norm, weight_decay, decay):
    """Five steps from the same state: parameters, EMA, moments and counts as optax's chain and
    the EMA give them, to float32 rounding (clipping on at the first setting's norm 1, off at 30:
    the gradients' norm is about 12)."""
    tc = _tc(clip_norm=clip_norm, weight_decay=weight_decay)
    tx, hyper = optimizer.make_optimizer(tc), fused_adamw.AdamWHyper.from_config(tc)
    params = _tree(jax.random.PRNGKey(0))
    ref = fused = (params, jax.tree.map(jnp.copy, params), tx.init(params))
    step_ref = jax.jit(lambda s, g: guarded_update.apply_update(tx, decay, *s, g))
    step_fused = jax.jit(lambda s, g: fused_adamw.guarded_adamw(hyper, decay, *s, g,
                                                                jnp.asarray(True)))
    for i in range(5):
        grads = _tree(jax.random.PRNGKey(10 + i), scale=3.0)
        ref = step_ref(ref, grads)
        *fused, finite = step_fused(fused, grads)
        assert bool(finite)
        for a, b in zip(_leaves(ref), _leaves(tuple(fused)), strict=True):
            if np.issubdtype(a.dtype, np.floating):
                np.testing.assert_allclose(b, a, rtol=2e-6, atol=1e-7)
            else:
                np.testing.assert_array_equal(b, a)
    # the state moved (the comparison is not of untouched states)
    assert not np.allclose(_leaves(ref[0])[0], _leaves(params)[0])


@pytest.mark.parametrize("learning_rate", [1e-2, 1e39])
def test_non_finite_step_keeps_the_state_bit_for_bit(learning_rate):
    """From a state after one finite step (moments and counts not zeros): a NaN gradient, ok=False
    (a non-finite loss), or (learning rate 1e39 -> inf) an update that overflows float32 with
    finite gradients: every leaf as it was, finite False."""
    tc = _tc(learning_rate=learning_rate, warmup_steps=0)
    hyper = fused_adamw.AdamWHyper.from_config(tc)
    params = _tree(jax.random.PRNGKey(1))
    step = jax.jit(lambda s, g, o: fused_adamw.guarded_adamw(hyper, 0.9, *s, g, o))
    state = (params, jax.tree.map(lambda x: x + 1.0, params),
             optimizer.make_optimizer(tc).init(params))
    grads = _tree(jax.random.PRNGKey(3), scale=1e-3)
    nan = jax.tree.map(jnp.copy, grads)
    nan["b"]["d"] = nan["b"]["d"].at[2].set(jnp.nan)
    if learning_rate < 1.0:
        *state, finite = step(state, _tree(jax.random.PRNGKey(2)), jnp.asarray(True))
        assert bool(finite)
        cases = [(nan, True), (grads, False)]
    else:
        cases = [(grads, True)]
    for g, ok in cases:
        *new, finite = step(tuple(state), g, jnp.asarray(ok))
        assert not bool(finite)
        for a, b in zip(_leaves(tuple(state)), _leaves(tuple(new)), strict=True):
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("path", ["fused", "select", "cond"])
def test_step_whose_ema_overflows_is_kept_with_the_ema_saturated(path):
    """Parameters and EMA at float32's largest value M in one leaf, decay 1/2: the plain average
    (e + p') / 2 overflows there (the guard used to skip such a step, and every later one). Now
    the step is kept: the parameters and moments move as optax's chain moves them, and the EMA
    saturates at M (training/ema.py), in the fused step and in both generic modes."""
    tc = _tc()
    tx, hyper = optimizer.make_optimizer(tc), fused_adamw.AdamWHyper.from_config(tc)
    largest = float(jnp.finfo(jnp.float32).max)
    params = _tree(jax.random.PRNGKey(6))
    params["a"] = jnp.full((3, 5), largest)
    state = (params, jax.tree.map(jnp.copy, params), tx.init(params))
    grads = _tree(jax.random.PRNGKey(7))
    if path == "fused":
        step = jax.jit(lambda s, g: fused_adamw.guarded_adamw(hyper, 0.5, *s, g, jnp.asarray(True)))
    else:
        step = jax.jit(lambda s, g: guarded_update.guarded_update(tx, 0.5, *s, g,
                                                                  jnp.asarray(True), path))
    new_params, new_ema, new_opt, finite = step(state, grads)
    assert bool(finite)
    ref_params, _, ref_opt = jax.jit(lambda s, g: guarded_update.apply_update(tx, 0.0, *s, g))(
        state, grads)
    for a, b in zip(_leaves((ref_params, ref_opt)), _leaves((new_params, new_opt)), strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(new_params["a"]), largest)  # finite: kept
    np.testing.assert_array_equal(np.asarray(new_ema["a"]), largest)
    np.testing.assert_allclose(np.asarray(new_ema["e"]), 0.5 * (params["e"] + new_params["e"]),
                               rtol=1e-6)


def test_generic_path_select_equals_cond():
    """A method's own optimizer (by_top_level_key: Adam on one group): guarded_update's generic
    'select' gives the 'cond' states up to float32 rounding, and keeps the old state on a NaN gradient."""
    tc = _tc()
    tx = optimizer.by_top_level_key({"b": optax.adam(1e-2)}, optimizer.make_optimizer(tc))
    params = _tree(jax.random.PRNGKey(4))
    states = {}
    for mode in ("cond", "select"):
        step = jax.jit(lambda s, g, m=mode: guarded_update.guarded_update(
            tx, 0.9, *s, g, jnp.asarray(True), m))
        state = (params, params, tx.init(params))
        for i in range(3):
            *state, finite = step(tuple(state), _tree(jax.random.PRNGKey(20 + i), 3.0))
            assert bool(finite)
        bad = _tree(jax.random.PRNGKey(30))
        bad["a"] = bad["a"].at[0, 0].set(jnp.inf)
        *after, finite = step(tuple(state), bad)
        assert not bool(finite)
        for a, b in zip(_leaves(tuple(state)), _leaves(tuple(after)), strict=True):
            np.testing.assert_array_equal(b, a)
        states[mode] = _leaves(tuple(state))
    for a, b in zip(states["cond"], states["select"], strict=True):  # two compiled programs
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_clip_equals_optax_clip():
    """optimizer.clip_by_global_norm: optax's values to float32 rounding, clipping or not."""
    grads = _tree(jax.random.PRNGKey(5), scale=3.0)
    for max_norm in (1.0, 100.0):
        ours, _ = optimizer.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        ref, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
        for a, b in zip(_leaves(ref), _leaves(ours), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=0)


def test_step_reads_and_writes_the_parameters_at_most_18_75_times():
    """XLA's bytes accessed of the compiled step (gradient norm, flag, update, EMA; the state
    donated) over the parameters' bytes, for parameters of 2 x 1 MB: measured 18.51 (19.5 while
    the flag read the EMA too; the unfused chain then jnp.where of the whole new state: 36 on the
    12-layer model)."""
    tc = _tc()
    tx, hyper = optimizer.make_optimizer(tc), fused_adamw.AdamWHyper.from_config(tc)
    params = {"a": jax.ShapeDtypeStruct((256, 1024), jnp.float32),
              "b": jax.ShapeDtypeStruct((512, 512), jnp.float32)}
    opt_state = jax.eval_shape(tx.init, params)

    def step(p, e, s, g, loss):
        norm = global_norm.global_norm(g)  # as the trainer: the same as the update's, shared
        return guarded_update.guarded_update(tx, 0.999, p, e, s, g,
                                             jnp.isfinite(loss) & jnp.isfinite(norm),
                                             "select", hyper), norm

    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(
        params, params, opt_state, params, jax.ShapeDtypeStruct((), jnp.float32)).compile()
    passes = compiled.cost_analysis()["bytes accessed"] / (2 * 4 * 256 * 1024)
    assert passes <= 18.75, passes
