"""`sampling.generate` compiles each sampler once per (sampler config, shapes, model_fn).

`jax.jit(lambda k: run(k, ctx))` on every call (what `generate` did) traces and compiles again on
every call, since each lambda is a new function. Here the jitted sampler is kept in a module cache
keyed by

    (process, parameterization, sampler settings, time conditioning, N, L, prompted or not,
     the model_fn object, params given or not)

and takes the key, the prompt arrays and `params` as arguments, so a second call with the same
config, shapes and model_fn costs no trace and no compile (tests/test_sampling_masked_sparse.py
counts them with jax's compile events).

What "the same model_fn" means: the same Python object (held by a weak reference: the entry is
dropped when the model_fn is garbage-collected, so a cache entry never keeps a network alive).
As with `jax.jit` itself, whatever the model_fn closes over is baked into the compiled sampler as
a constant at its first call:
  * a closure over new parameters on every call (`lambda x, t: model.apply({'params': p}, x, t)`
    built anew each time) is a new model_fn, so it compiles on every call;
  * the reusable form passes the parameters as an argument: `generate(key, model_fn, config, N, L,
    params=p)` with `model_fn(params, x_t, t, **inputs)`; new parameter values (same tree and
    shapes) then reuse the compiled sampler;
  * a model_fn that reads mutable state (a global, an attribute it looks up at call time) sees
    that state as it was at its first call; pass such state as `params` (or `clear()` the cache).
Every network output inside the compiled sampler is checked for NaN / +inf / all -inf rows
(`finite_guard`: checkify, threaded through the loops; `NonFiniteSamplingError` naming t at the
end, no host callback). A sampler built inside `trace.recording()` is cached apart (its trace
callback reaches whichever recording is open when it runs). Not cached (compiled per call, as
before): a schedule holding arrays (a learned per-position schedule), a guided context, or a
model_fn that cannot be weakly referenced.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import json
import weakref
from collections.abc import Callable
from typing import Any

import jax

from discrete_diffusion.sampling import finite_guard
from discrete_diffusion.sampling.context import Context, accepts_output_positions

Array = jax.Array
MAX_ENTRIES = 32  # least recently used entries beyond this are dropped

_CACHE: collections.OrderedDict = collections.OrderedDict()


def clear() -> None:
    """Drops every cached sampler."""
    _CACHE.clear()


def cache_size() -> int:
    """Number of cached samplers (one per config, shapes and model_fn)."""
    return len(_CACHE)


def _drop(ref: weakref.ref) -> None:
    for k in [k for k in _CACHE if k[0] is ref]:
        del _CACHE[k]


def _weak(model_fn: Callable) -> weakref.ref | None:
    try:
        if inspect.ismethod(model_fn):
            return weakref.WeakMethod(model_fn, _drop)
        return weakref.ref(model_fn, _drop)
    except TypeError:
        return None


def _config_key(ctx: Context) -> tuple | None:
    """What the compiled sampler depends on besides the model_fn; None if not hashable."""
    if ctx.guide is not None:
        return None
    key = (ctx.proc, ctx.parameterization, json.dumps(ctx.settings, sort_keys=True, default=repr),
           ctx.num_samples, ctx.seq_len, ctx.time_conditioning, ctx.prompt_mask is None,
           ctx.recorder is not None)  # a recording sampler (trace.py) is its own program
    try:
        hash(key)
    except TypeError:  # e.g. a schedule holding arrays
        return None
    return key


def bind_params(model_fn: Callable[..., Array], params: Any) -> Callable[..., Array]:
    """`(x_t, t, **inputs) -> model_fn(params, x_t, t, **inputs)`, keeping the
    `output_positions` keyword visible when `model_fn` accepts it."""
    if accepts_output_positions(model_fn):
        def bound(x_t: Array, t: Array, output_positions: Array | None = None, **inputs: Array):
            if output_positions is not None:
                inputs["output_positions"] = output_positions
            return model_fn(params, x_t, t, **inputs)
    else:
        def bound(x_t: Array, t: Array, **inputs: Array):
            return model_fn(params, x_t, t, **inputs)
    return bound


def run(key: Array, ctx: Context, sampler: Callable[[Array, Context], tuple[Array, Array]],
        params: Any = None) -> tuple[Array, Array]:
    """`sampler(key, ctx)` jitted, through the cache when possible. With `params` not None,
    `ctx.model_fn` is `model_fn(params, x_t, t, **inputs)` and `params` a jit argument."""
    with_params = params is not None
    config_key = _config_key(ctx)
    ref = _weak(ctx.model_fn) if config_key is not None else None
    prompt = (ctx.prompt_tokens, ctx.prompt_mask)
    if ref is None:  # not cacheable: one jit per call
        def once(key: Array, params: Any) -> tuple[Array, Array]:
            fn = bind_params(ctx.model_fn, params) if with_params else ctx.model_fn
            return sampler(key, dataclasses.replace(ctx, model_fn=finite_guard.guard(fn)))
        return finite_guard.raise_if_bad(*jax.jit(finite_guard.checked(once))(key, params))
    cache_key = (ref, with_params, sampler, config_key)
    fn = _CACHE.get(cache_key)
    if fn is None:
        template = dataclasses.replace(ctx, model_fn=None, prompt_tokens=None, prompt_mask=None)

        def compiled(key: Array, params: Any, prompt_tokens: Array | None,
                     prompt_mask: Array | None) -> tuple[Array, Array]:
            model_fn = ref()  # alive: the caller holds it during the call
            model_fn = bind_params(model_fn, params) if with_params else model_fn
            return sampler(key, dataclasses.replace(template, model_fn=finite_guard.guard(model_fn),
                                                    prompt_tokens=prompt_tokens,
                                                    prompt_mask=prompt_mask))

        fn = _CACHE[cache_key] = jax.jit(finite_guard.checked(compiled))
        while len(_CACHE) > MAX_ENTRIES:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(cache_key)
    return finite_guard.raise_if_bad(*fn(key, params, *prompt))
