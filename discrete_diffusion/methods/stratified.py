"""Low-discrepancy (stratified) times and the multi-t Monte-Carlo NELBO of a sequence.

Diffusion objectives are integrals over t of an integrand that is heavy-tailed near the ends, so
how t is drawn matters for the variance. Both the training step and held-out evaluation use one
rule, a shifted regular grid (Kingma et al. 2021's low-discrepancy sampler):

    t_j = t_min + (1 - t_min) * ((u + j / n) mod 1),   j = 0 .. n - 1,   u ~ U[0, 1),

so each of the n equal strata of [t_min, 1) holds exactly one t_j and each t_j is marginally
U[t_min, 1). `batch_times` shares one shift u across the rows of a batch (training: the batch
mean is a stratified estimate of the t-integral); `low_discrepancy_times` draws an independent
shift per row and stratifies num_t times within each row (evaluation: each row's mean is a
stratified estimate of that sequence's NELBO). Times are drawn on [t_min, 1] without reweighting,
so the target is (1 / (1 - t_min)) int_{t_min}^1 E[f] dt, O(t_min) away from the t_min = 0 NELBO.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
LN2 = math.log(2.0)

# nelbo_fn(key, x0 [B, L], t [B]) -> per-token NELBO [B, L] (nats; x_t sampled inside with `key`)
NelboFn = Callable[[Array, Array, Array], Array]


def _stratify(u: Array, n: int, t_min: float) -> Array:
    """t_min + (1 - t_min) * ((u + j / n) mod 1) for j < n along a new last axis of size n."""
    grid = jnp.arange(n, dtype=jnp.float32) / n  # [n]
    return t_min + (1.0 - t_min) * jnp.mod(u[..., None] + grid, 1.0)


def batch_times(key: Array, batch_size: int, t_min: float) -> Array:
    """Times `[B]` stratified across the batch: one shift u ~ U[0, 1) for all rows,
    t_b = t_min + (1 - t_min) * ((u + b / B) mod 1)."""
    return _stratify(jax.random.uniform(key, ()), batch_size, t_min)


def low_discrepancy_times(key: Array, batch_size: int, num_t: int, t_min: float) -> Array:
    """Times `[B, num_t]` stratified within each row, an independent shift u_b per row:
    t_bj = t_min + (1 - t_min) * ((u_b + j / num_t) mod 1)."""
    return _stratify(jax.random.uniform(key, (batch_size,)), num_t, t_min)


def nelbo_samples(
    key: Array, nelbo_fn: NelboFn, x0: Array, num_t: int, t_min: float,
    weights: Array | None = None,
) -> Array:
    """Per-sequence NELBO samples `[B, num_t]` (nats per sequence), one per stratified time:

        s_bj = sum_i w_bi nelbo_fn(k_j, x0, t_{:, j})_bi,   t from `low_discrepancy_times`,

    k_j independent keys (fresh x_t for every time). `weights` `[B, L]` (e.g. a padding mask;
    default all ones) multiplies the per-token terms. `nelbo_fn(key, x0 [B, L], t [B]) -> [B, L]`
    is supplied by the caller (it samples x_t, runs the network and applies the process's NELBO),
    so this works for any process / parameterization / model. Jit-friendly: `lax.map` over the
    num_t axis (one network batch [B, L] in memory at a time); `num_t` must be static.
    """
    B = x0.shape[0]
    k_t, k_fn = jax.random.split(key)
    t = low_discrepancy_times(k_t, B, num_t, t_min)  # [B, num_t]
    w = jnp.ones(x0.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    keys = jax.random.split(k_fn, num_t)

    def one_time(args):
        k, t_j = args  # t_j: [B]
        return jnp.sum(nelbo_fn(k, x0, t_j) * w, axis=-1)  # [B]

    per = jax.lax.map(one_time, (keys, t.T))  # [num_t, B]
    return per.T  # [B, num_t]


def summarize_nelbo(per_seq_samples: Array | np.ndarray, tokens_per_seq: Array | np.ndarray) -> dict:
    """Summary of `nelbo_samples` `[B, num_t]` for sequences of `tokens_per_seq` `[B]` tokens.

    Per-sequence mean m_b = (1/num_t) sum_j s_bj (an unbiased estimate of NELBO(x_0^b)), n_b tokens.
    The per-token NELBO is the ratio estimator over the corpus (every token counts once):

        nelbo = R = sum_b m_b / sum_b n_b,   bpt = R / ln 2,   ppl = exp(R),

    with its delta-method standard error from the residuals e_b = m_b - R n_b (the m_b are iid
    across sequences, so this is valid whatever the dependence between a row's stratified times):

        se = sqrt( B / (B - 1) * sum_b e_b^2 ) / sum_b n_b.

    When all n_b = n it equals the plain std(m_b / n, ddof=1) / sqrt(B). `se` covers both the data
    sampling and the Monte-Carlo (t, x_t) noise: it is the error of R as an estimate of the
    population E[NELBO] / E[n]. `mc_se` is the Monte-Carlo part alone, the error of R as an estimate
    of the exact NELBO of *this* batch, treating a row's num_t samples as iid:

        mc_se = sqrt( sum_b v_b / num_t ) / sum_b n_b,   v_b = var_j(s_bj) (ddof=1);

    it shrinks as 1 / sqrt(num_t). Caveats: stratification lowers the true error of a smooth
    t-integrand (not accounted for), while the NELBO integrands are heavy-tailed (the masked weight
    -alpha'/(1 - alpha) = 1/t near t_min, the uniform one near t = 1), so v_b is itself noisy and for
    small samples tends to under-estimate (on the toy tests the realised spread is ~1-2 mc_se);
    treat both SEs as indicative and prefer many sequences.
    Returns floats: nelbo (nats/token), bpt, ppl, se, se_bpt, mc_se, num_sequences, num_t, num_tokens.
    """
    s = np.asarray(per_seq_samples, np.float64)  # [B, T]
    n = np.asarray(tokens_per_seq, np.float64).reshape(-1)  # [B]
    if s.ndim != 2 or s.shape[0] != n.shape[0]:
        raise ValueError(f"per_seq_samples {s.shape} must be [B, num_t] with B = len(tokens_per_seq)")
    B, T = s.shape
    total = float(n.sum())
    if total <= 0:
        raise ValueError("tokens_per_seq must sum to a positive number")
    m = s.mean(axis=1)  # [B]
    R = float(m.sum() / total)
    if B > 1:
        e = m - R * n
        se = math.sqrt(B / (B - 1) * float(np.sum(e**2))) / total
    else:
        se = float("nan")
    mc_se = math.sqrt(float(np.sum(s.var(axis=1, ddof=1))) / T) / total if T > 1 else float("nan")
    return {
        "nelbo": R,
        "bpt": R / LN2,
        "ppl": math.exp(R),
        "se": se,
        "se_bpt": se / LN2,
        "mc_se": mc_se,
        "num_sequences": int(B),
        "num_t": int(T),
        "num_tokens": total,
    }
