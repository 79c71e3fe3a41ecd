"""Likelihood evaluation: a multi-t Monte-Carlo NELBO per sequence and the exact AR NLL.

Diffusion models give an upper bound on -log p(x_0) (nats per sequence),

    NELBO(x_0) = E_{t ~ U[t_min, 1]} E_{x_t ~ q_t(. | x_0)} [ sum_i w_i f_i(x_0, x_t, t) ],

f = the per-token continuous-time NELBO integrand (`losses.nelbo_per_token`). A method's
`nelbo_samples` (`methods.stratified.nelbo_samples`, re-exported here) draws `num_t` stratified
times per sequence and one x_t per time; `summarize_nelbo` turns the samples into nats/bits per
token, perplexity and standard errors (both live in `methods.stratified`, below the trainer).

`ar_log_likelihood` is the exact NLL of the autoregressive baseline
(`models.transformer.AutoregressiveTransformer`), so both families are reported in the same units.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from discrete_diffusion.methods.stratified import (  # noqa: F401  (re-exported)
    low_discrepancy_times,
    nelbo_samples,
    summarize_nelbo,
)

Array = jax.Array
LN2 = math.log(2.0)


def ar_log_likelihood(logits: Array, x0: Array, mask: Array | None = None) -> Array:
    """Exact per-sequence NLL `[B]` (nats) of an autoregressive model:

        NLL(x_0) = - sum_i mask_i log softmax(logits_i)[x_0^i].

    Alignment (that of `models.transformer.AutoregressiveTransformer`): `logits [B, L, K]` come from
    the shifted inputs `ar_inputs(x0, bos_id)` (BOS, x_0^0, ..., x_0^{L-2}), so logits[:, i] is the
    model's p(x_0^i | x_0^{<i}) and position i is scored against x0[:, i] itself (no shift here).
    `mask [B, L]` (default all ones) drops positions (padding), not their conditioning.
    """
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, L, K]
    ll = jnp.take_along_axis(log_p, x0[..., None].astype(jnp.int32), axis=-1)[..., 0]  # [B, L]
    if mask is not None:
        ll = jnp.where(mask.astype(bool), ll, 0.0)
    return -jnp.sum(ll, axis=-1)  # [B]
