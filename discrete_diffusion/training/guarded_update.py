"""The optimizer update, the EMA of the parameters and the non-finite guard, in few passes over
the parameters.

    params, ema, opt_state, finite = guarded_update(tx, ema_decay, params, ema, opt_state, grads,
                                                    ok, mode='select')

The update of a step (`apply_update`) is the optax transformation `tx` (e.g. clip_by_global_norm
then AdamW) and the EMA of the new parameters,

    u, s' = tx.update(g, s, p);   p' = p + u;   e' = clip(d e + (1 - d) p', -M, M)

(`ema.ema_update`; e' = p' when d = 0), and the guard keeps the old state unless `ok` (the loss and
the gradient norm are finite) and every leaf of (p', s') is finite:

    finite = ok & all(isfinite(p'), isfinite(s'));   state' = finite ? new : old.

The EMA need not be checked: from finite e and p' the clipped average is finite (`ema` module doc).

What the parameter side of the step costs is the number of times it reads or writes a
parameter-sized array. XLA on the CPU fuses elementwise work into one loop per output array, but
not several outputs into one loop (no multi-output fusion), and it keeps a value that two loops
read (a division, a square root) in memory. `mode`:

'select'   with `adamw` (the trainer passes it when the method keeps `optimizer.make_optimizer`'s
           chain as it is): `fused_adamw.guarded_adamw`, the same arithmetic in 19 passes (its
           module doc). Otherwise (a method's own optimizer, e.g. `optimizer.by_top_level_key`):
           (1) the gradient norm; (2) the flag, one reduction per shape of the parameters over
           all new leaves of that shape at once (`fused_adamw.all_finite_by_shape`), which XLA
           computes from the old leaves inside the reduction (the EMA is not read: it stays
           finite by construction); (3) the new state, recomputed
           behind an optimization barrier (so XLA cannot keep (2)'s values as scratch) and
           selected leaf by leaf,
               p'' = where(finite, p', p),  s'' = where(finite, s', s),
               e'' = where(finite, d e + (1 - d) p'', e)
           (the EMA of the selected parameters, equal to e' whenever finite). XLA copies the old
           moments here (the loop of p'' reads them after s'' overwrote them in place), so this
           path takes more passes than the fused one.
'cond'     finite from `apply_update`'s leaves, then lax.cond(finite, apply_update, keep old):
           the update's arithmetic runs twice in separate computations (the trainer's earlier
           'cond' path, kept for comparison).

A non-finite step leaves every leaf as it was, bit for bit, in every mode; a finite one gives the
values of `apply_update`. Parameter passes of the update alone on the 12-layer d = 768, V = 50257
model (`benchmarks/train_param_bytes.py --update_only`; docs/benchmarks_perf.md): 'select' 18.25,
'cond' 19.25 (19.25 and 20.25 while the flag also read the EMA), the trainer's earlier 'select'
(jnp.where of a materialised new state) 36.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from discrete_diffusion.training.ema import ema_update
from discrete_diffusion.training.fused_adamw import AdamWHyper, all_finite_by_shape, guarded_adamw

MODES = ("cond", "select")


def apply_update(tx: optax.GradientTransformation, decay: float, params: Any, ema: Any,
                 opt_state: Any, grads: Any) -> tuple[Any, Any, Any]:
    """(p', e', s'): u, s' = tx.update(g, s, p); p' = p + u; e' = ema.ema_update(decay, e, p')."""
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, ema_update(decay, ema, params), opt_state


def _where(finite: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def guarded_update(tx: optax.GradientTransformation, decay: float, params: Any, ema: Any,
                   opt_state: Any, grads: Any, ok: jax.Array, mode: str = "select",
                   adamw: AdamWHyper | None = None) -> tuple[Any, Any, Any, jax.Array]:
    """(p'', e'', s'', finite): `apply_update` where `ok`, p' and s' are finite, the old
    state bit for bit elsewhere (see the module doc for the passes of each `mode`). `adamw`: the
    hyperparameters when `tx` is `optimizer.make_optimizer`'s chain itself; with mode 'select'
    the step is then `fused_adamw.guarded_adamw` (the same arithmetic in fewer passes)."""
    if mode not in MODES:
        raise ValueError(f"config.training.nonfinite_skip={mode!r} is not one of {list(MODES)}")
    if mode == "select" and adamw is not None:
        return guarded_adamw(adamw, decay, params, ema, opt_state, grads, ok)
    new = apply_update(tx, decay, params, ema, opt_state, grads)
    finite = ok & all_finite_by_shape((new[0], new[2]))  # p', s' (e' is finite when they are)
    old = (params, ema, opt_state)
    if mode == "cond":
        params, ema, opt_state = jax.lax.cond(
            finite, lambda o, g: apply_update(tx, decay, *o, g), lambda o, g: o, old, grads)
        return params, ema, opt_state, finite
    # The barrier makes the update below a computation of its own (XLA cannot merge it with the
    # flag's, so neither keeps the new state as scratch) that starts once the flag is known.
    finite, (params, ema, opt_state) = jax.lax.optimization_barrier((finite, old))
    updates, new_opt = tx.update(grads, opt_state, params)
    new_params = _where(finite, optax.apply_updates(params, updates), params)
    new_ema = _where(finite, ema_update(decay, ema, new_params), ema) if decay > 0 else new_params
    return new_params, new_ema, _where(finite, new_opt, opt_state), finite
