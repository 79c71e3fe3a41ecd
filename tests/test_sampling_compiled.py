"""`dd.generate` compiles once per (config, shapes, model_fn): counted with jax's own compile and
trace events, not timed."""

import gc

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import discrete_diffusion as dd
from discrete_diffusion.sampling import compiled

K, L, N = 3, 4, 2
EVENTS = ("/jax/core/compile/backend_compile_duration", "/jax/core/compile/jaxpr_trace_duration")
W = jax.random.normal(jax.random.key(0), (K + 1, K))


def _config():
    return ml_collections.ConfigDict({
        "process": {"name": "masked", "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser", "time_conditioning": True},
        "sampler": {"name": "first_hitting"},
    })


def model_fn(x_t, t):
    return W[x_t] + t[:, None, None]


def model_fn_params(params, x_t, t):
    return params["w"][x_t] + t[:, None, None]


def _compiles(fn):
    """(fn(), number of backend compiles and jaxpr traces during the call)."""
    events = []

    def listener(event, duration, **kwargs):
        if event in EVENTS:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        out = fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return out, len(events)


def test_second_call_costs_no_compile():
    config, keys = _config(), jax.random.split(jax.random.key(1), 3)
    before = compiled.cache_size()
    first, n1 = _compiles(lambda: dd.generate(keys[0], model_fn, config, N, L))
    assert n1 > 0 and compiled.cache_size() == before + 1
    second, n2 = _compiles(lambda: dd.generate(keys[1], model_fn, _config(), N, L))
    assert n2 == 0 and compiled.cache_size() == before + 1
    again = dd.generate(keys[0], model_fn, config, N, L)  # same key, same tokens
    np.testing.assert_array_equal(np.asarray(first.tokens), np.asarray(again.tokens))
    prompt = dict(prompt_tokens=jnp.zeros((N, L), jnp.int32), prompt_mask=jnp.eye(N, L, dtype=bool))
    dd.generate(keys[0], model_fn, config, N, L, **prompt)
    other = dict(prompt_tokens=jnp.ones((N, L), jnp.int32), prompt_mask=~prompt["prompt_mask"])
    out, n3 = _compiles(lambda: dd.generate(keys[1], model_fn, config, N, L, **other))
    assert n3 == 0
    assert np.all(np.asarray(out.tokens)[np.asarray(other["prompt_mask"])] == 1)


def test_params_as_argument_reuse_a_closure_recompiles():
    config, keys = _config(), jax.random.split(jax.random.key(2), 2)
    p1, p2 = {"w": W}, {"w": 2.0 * W}
    dd.generate(keys[0], model_fn_params, config, N, L, params=p1)
    out, n = _compiles(lambda: dd.generate(keys[1], model_fn_params, config, N, L, params=p2))
    assert n == 0  # new parameter values: the same compiled sampler
    size = compiled.cache_size()
    # A closure over the parameters, new on every call, is a new model_fn: it compiles (documented);
    # it samples what the params form sampled, and its cache entry goes with it (weak reference).
    ref, n = _compiles(lambda: dd.generate(keys[1], lambda x, t: model_fn_params(p2, x, t),
                                           config, N, L))
    assert n > 0
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
    gc.collect()
    assert compiled.cache_size() == size
