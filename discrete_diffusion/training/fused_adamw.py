"""The guarded AdamW step of `optimizer.make_optimizer`'s chain, written so that XLA reads and
writes each parameter-sized array as few times as it can.

    hyper = AdamWHyper.from_config(config.training)
    params, ema, opt_state, finite = guarded_adamw(hyper, ema_decay, params, ema, opt_state,
                                                   grads, ok)

The arithmetic is optax's, operation for operation (clip_by_global_norm, scale_by_adam,
add_decayed_weights, scale_by_learning_rate, apply_updates; `tests/test_fused_adamw.py` compares
the two on random trees), with the norm n = ||g|| (`global_norm.global_norm`: optax.tree.norm's
value up to float32 summation order), the clip factor c = min(1, clip_norm / n) as
`optimizer.clip_by_global_norm`, and t the step count after the update:

    g~ = c g;   m' = (1 - b1) g~ + b1 m;   v' = (1 - b2) g~^2 + b2 v
    p' = p - lr(t - 1) ((m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps) + wd p)
    e' = clip(d e + (1 - d) p', -M, M)                       (`ema.ema_update`)

guarded like `guarded_update` ('select'): finite = ok & p', m', v' finite (e' is finite whenever
p' is: `ema` module doc), and each leaf is where(finite, new, old). What differs from running
optax's chain and then selecting is only the order in which the values are formed, so that every
loop XLA makes writes one output:

    flag     one reduction per parameter shape over isfinite(p', m', v'), which reads g, p, m, v
             once and writes nothing (1 byte per element of a predicate between XLA's
             elementwise loop and its reduction);
    m'', v'' where(finite, m', m) and where(finite, v', v): read g and m (v), write m'' (v'');
    p''      where(finite, p - lr (...(m'', v'')...), p): reads the *selected* moments m'', v''
             (equal to m', v' when finite; p'' = p otherwise), so no loop reads the old moments
             after they are overwritten in place (XLA would copy them) and none keeps the Adam
             direction as scratch;
    e''      where(finite, clip(d e + (1 - d) p'', -M, M), e): reads e and p''.

With the gradient norm, 1 + 4 + 3 + 3 + 4 + 3 = 18 parameter passes (plus the predicate's:
measured 18.25 on the 12-layer model), the least for this guard when every loop has one output: a
finite step writes the four arrays (4 passes) after a reduction that needs the four inputs of
p', m', v' (4), and p'' and e'' need their inputs (p, m'', v''; e, p'') after m'' and v''
(2 + 2 each). The unguarded chain needs 1 + 13. (With the EMA in the flag it took 19.25.)
Reducing rows of 32 elements inside the flag's loop first would drop the predicate (18.01
passes), but XLA:CPU runs such a reduction loop so much more slowly than its elementwise loop and
library reduction that the update took 1.35x as long (`benchmarks/compare_train_step.py
--update_only`), so the predicate stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax._src import numerics

from discrete_diffusion.training.ema import ema_update
from discrete_diffusion.training.global_norm import global_norm


@dataclass(frozen=True)
class AdamWHyper:
    """The hyperparameters of `optimizer.make_optimizer(tc)`'s chain."""

    lr_fn: Any
    b1: float
    b2: float
    weight_decay: float
    clip_norm: float
    eps: float = 1e-8

    @classmethod
    def from_config(cls, tc: Any) -> AdamWHyper:
        from discrete_diffusion.training.optimizer import learning_rate_schedule

        return cls(lr_fn=learning_rate_schedule(tc), b1=float(tc.get("adam_b1", 0.9)),
                   b2=float(tc.get("adam_b2", 0.999)), weight_decay=float(tc.weight_decay),
                   clip_norm=float(tc.get("clip_norm", 0.0) or 0.0))


def all_finite_by_shape(tree: Any) -> jax.Array:
    """True iff every floating-point leaf of `tree` is finite (as `faults.tree_all_finite`), with
    one reduction per leaf shape over the elementwise AND of isfinite of all leaves of that shape:
    XLA then reads the inputs of a parameter's new value and moments once, in one loop."""
    groups: dict[tuple, list] = {}
    for x in jax.tree.leaves(tree):
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact):
            groups.setdefault(tuple(jnp.shape(x)), []).append(x)
    checks = []
    for leaves in groups.values():
        ok = jnp.isfinite(leaves[0])
        for x in leaves[1:]:
            ok = ok & jnp.isfinite(x)
        checks.append(jnp.all(ok))
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def _states(hyper: AdamWHyper, opt_state: Any):
    """(ScaleByAdamState, ScaleByScheduleState) of the chain's state, and a function that puts
    new ones back in its place (the checkpointed structure is the chain's, unchanged)."""
    adamw = opt_state[-1]
    adam, sched = adamw[0], adamw[2]
    if not isinstance(adam, optax.ScaleByAdamState) or not isinstance(
            sched, optax.ScaleByScheduleState):
        raise TypeError(f"not the state of optimizer.make_optimizer's chain: {type(opt_state)}")

    def rebuild(new_adam, new_sched):
        return (*opt_state[:-1], (new_adam, adamw[1], new_sched))

    return adam, sched, rebuild


def guarded_adamw(hyper: AdamWHyper, decay: float, params: Any, ema: Any, opt_state: Any,
                  grads: Any, ok: jax.Array) -> tuple[Any, Any, Any, jax.Array]:
    """(p'', e'', s'', finite): the step of the module doc; the old state bit for bit where
    not finite."""
    adam, sched, rebuild = _states(hyper, opt_state)
    b1, b2, eps, wd = hyper.b1, hyper.b2, hyper.eps, hyper.weight_decay
    if hyper.clip_norm:
        norm = global_norm(grads)
        trigger = jnp.squeeze(norm < hyper.clip_norm)
        factor = hyper.clip_norm / norm
        grads = jax.tree.map(lambda t: jax.lax.select(trigger, t, t * factor.astype(t.dtype)),
                             grads)  # optimizer.clip_by_global_norm
    count = numerics.safe_increment(adam.count)
    step_size = -hyper.lr_fn(sched.count)

    def direction(m, v, p):
        """lr-scaled AdamW direction from the new moments (optax's operations and order)."""
        m_hat = optax.tree.bias_correction(m, b1, count)
        v_hat = optax.tree.bias_correction(v, b2, count)
        u = jax.tree.map(lambda a, b: a / (jnp.sqrt(b + 0.0) + eps), m_hat, v_hat)
        if wd != 0.0:
            u = jax.tree.map(lambda x, q: x + wd * q, u, p)
        return jax.tree.map(lambda x: jnp.array(step_size, dtype=x.dtype) * x, u)

    def apply(p, u):
        return jax.tree.map(lambda a, b: jnp.asarray(a + b).astype(jnp.asarray(a).dtype), p, u)

    mu = optax.tree.update_moment(grads, adam.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(grads, adam.nu, b2, 2)
    new_params = apply(params, direction(mu, nu, params))
    finite = ok & all_finite_by_shape((new_params, mu, nu))  # e' is finite when p' is

    def where(new, old):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    # The barrier keeps XLA from merging the moments below with the flag's (it would keep them
    # in memory for both loops, where it now recomputes them in each).
    finite, old_mu, old_nu = jax.lax.optimization_barrier((finite, adam.mu, adam.nu))
    mu = where(optax.tree.update_moment(grads, old_mu, b1, 1), old_mu)
    nu = where(optax.tree.update_moment_per_elem_norm(grads, old_nu, b2, 2), old_nu)
    params = where(apply(params, direction(mu, nu, params)), params)
    ema = where(ema_update(decay, ema, params), ema) if decay > 0 else params
    count = jnp.where(finite, count, adam.count)
    new_adam = adam._replace(count=count, mu=mu, nu=nu)
    new_sched = sched._replace(count=jnp.where(finite, numerics.safe_increment(sched.count),
                                               sched.count))
    return params, ema, rebuild(new_adam, new_sched), finite
