"""Samplers with a per-position schedule alpha_{t,l} = 1 - t^{w_l} (learned decoding orders):
'ordered_first_hitting' (orders follow Plackett-Luce(w), exact samples at the TV floor, prompts),
'ancestral' (per-position kernel in closed form, exact model at the TV floor) and 'psi'
(per-position marginals preserved given x_0 for any kappa, kappa = 1 is the ancestral kernel,
ReMDM kappas per position), all enumerated on a toy (K = L = 3); refusals name the field."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion import processes, sampling, schedules
from discrete_diffusion.sampling import ancestral, ordered_first_hitting, psi
from discrete_diffusion.testing import oracle

K, L = 3, 3
MASK = K
P0 = oracle.toy_law(K, L, seed=3)
W = jnp.array([0.3, 1.0, 5.0])
ORDERS = list(itertools.permutations(range(L)))


def _config(name: str, **sampler) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "process": {"name": "masked", "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser", "time_conditioning": False},
        "sampler": {"name": name, **sampler},
    })


def _exact():
    return oracle.exact_model_fn(P0, processes.masked(K))


def _uniform_denoiser(x, t):
    return jnp.zeros(x.shape + (K,))


def _tv(tokens) -> tuple[float, float]:
    """(TV of the samples to P0, the TV an exact sampler stays below: E[TV] + 5 SD)."""
    tokens = np.asarray(tokens)
    tv = oracle.total_variation(oracle.empirical_law(tokens, K), P0.reshape(-1))
    return tv, oracle.tv_bound(P0.reshape(-1), len(tokens))


def pl_prob(w, order) -> float:
    """Plackett-Luce probability of decoding `order` (order[0] first)."""
    return math.prod(w[order[i]] / sum(w[j] for j in order[i:]) for i in range(len(order)))


# ---- ordered first hitting -------------------------------------------------------------------
def test_ordered_first_hitting_orders_follow_plackett_luce():
    w, n = np.array([0.5, 1.5, 3.0]), 10_000
    ctx = sampling.make_context(_uniform_denoiser, _config("ordered_first_hitting"), n, L,
                                schedule=schedules.PerTokenPolynomial(jnp.asarray(w)))
    _, nfe, order = jax.jit(lambda k: ordered_first_hitting.decode(k, ctx))(jax.random.key(0))
    assert int(nfe) == L
    order = np.asarray(order)
    for perm in ORDERS:
        p = pl_prob(w, perm)
        freq = np.mean((order == np.array(perm)[None]).all(-1))
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (perm, freq, p)
    # larger w first: (2, 1, 0) is the most frequent order
    assert pl_prob(w, (2, 1, 0)) == max(pl_prob(w, perm) for perm in ORDERS)


def test_ordered_first_hitting_with_the_exact_model_is_at_the_tv_floor():
    res = dd.generate(jax.random.key(2), _exact(), _config("ordered_first_hitting"), 8000, L,
                      schedule=schedules.PerTokenPolynomial(W))
    tv, bound = _tv(res.tokens)
    assert tv < bound and res.nfe == L, (tv, bound)


def test_ordered_first_hitting_keeps_the_prompt_and_skips_its_calls():
    prompt = jnp.array([[2, 0, 0]] * 8, jnp.int32)
    pmask = jnp.array([[True, False, False]] * 8)
    ctx = sampling.make_context(_exact(), _config("ordered_first_hitting"), 8, L, prompt, pmask,
                                schedule=schedules.PerTokenPolynomial(jnp.ones(L)))
    toks, nfe, order = jax.jit(lambda k: ordered_first_hitting.decode(k, ctx))(jax.random.key(3))
    assert (np.asarray(toks)[:, 0] == 2).all() and int(nfe) == L - 1
    assert (np.asarray(order)[:, 0] == 0).all() and int(np.asarray(toks).max()) < K


def test_ordered_first_hitting_times_follow_the_schedule():
    """P(T_l <= t) = 1 - alpha_{t,l}, per position (polynomial: log T = log u / w) and for a
    univariate schedule through its inverse (cosine)."""
    u = jax.random.uniform(jax.random.key(4), (40_000, L), minval=1e-12)
    for sched in (schedules.PerTokenPolynomial(W), schedules.Cosine()):
        T = np.exp(np.asarray(ordered_first_hitting.log_unmask_times(sched, u)))
        T = np.broadcast_to(T, (40_000, L))
        for t in (0.2, 0.5, 0.9):
            expect = 1.0 - np.broadcast_to(np.asarray(sched.alpha(jnp.full((L,), t))), (L,))
            np.testing.assert_allclose((t >= T).mean(0), expect, atol=0.01)


# ---- ancestral and psi with per-position alpha -----------------------------------------------
def test_per_position_ancestral_kernel_is_the_closed_form():
    """At a masked position: (alpha_{s,l} - alpha_{t,l}) / (1 - alpha_{t,l}) mu + the rest stays
    masked, with each position's own alpha; clean positions stay."""
    proc = processes.masked(K, schedules.PerTokenPolynomial(W))
    mu = jax.nn.softmax(jax.random.normal(jax.random.key(5), (4, L, K)), -1)
    x_t = jnp.array([[MASK, MASK, MASK], [0, MASK, MASK], [MASK, 2, MASK], [1, 1, MASK]])
    t, s = jnp.array([1.0, 0.8, 0.6, 0.3]), jnp.array([0.7, 0.5, 0.2, 0.0])
    kern = np.asarray(jax.jit(lambda *a: ancestral.reverse_kernel(proc, "denoiser", *a))(
        jnp.log(mu), x_t, t, s))
    a_t = 1.0 - np.asarray(t)[:, None] ** np.asarray(W)
    a_s = 1.0 - np.asarray(s)[:, None] ** np.asarray(W)
    unmask = (a_s - a_t) / (1.0 - a_t)
    for n in range(4):
        for pos in range(L):
            if int(x_t[n, pos]) == MASK:
                np.testing.assert_allclose(kern[n, pos, :K], unmask[n, pos] * np.asarray(mu[n, pos]),
                                           atol=1e-6)
                np.testing.assert_allclose(kern[n, pos, MASK], 1.0 - unmask[n, pos], atol=1e-6)
            else:
                assert kern[n, pos, int(x_t[n, pos])] == pytest.approx(1.0)
    assert len({round(float(u), 4) for u in unmask[0]}) == L  # the positions really differ


def test_per_position_ancestral_with_the_exact_model_is_at_the_tv_floor():
    res = dd.generate(jax.random.key(6), _exact(), _config("ancestral", num_steps=64), 8000, L,
                      schedule=schedules.PerTokenPolynomial(W))
    tv, bound = _tv(res.tokens)
    assert tv < bound, (tv, bound)


@pytest.mark.parametrize("kappa", [0.0, 0.35, 1.0])
def test_per_position_psi_kernel_preserves_each_positions_marginal(kappa):
    """Given the true x_0, Psi maps q_t(.|x_0) to q_s(.|x_0) at every position with its own
    alpha; at kappa = 1 it is the ancestral kernel."""
    proc = processes.masked(K, schedules.PerTokenPolynomial(W))
    t, s = jnp.full((K + 1,), 0.7), jnp.full((K + 1,), 0.4)
    x_t = jnp.repeat(jnp.arange(K + 1)[:, None], L, axis=1)  # row z: z_t = z at every position

    @jax.jit
    def kernels(logits):
        return (psi.psi_kernel(proc, "denoiser", logits, x_t, t, s, kappa),
                ancestral.reverse_kernel(proc, "denoiser", logits, x_t, t, s))

    for x0 in range(K):
        logits = jnp.where(jax.nn.one_hot(jnp.full((K + 1, L), x0), K) > 0, 0.0, -60.0)
        kern, anc = (np.asarray(a) for a in kernels(logits))  # [V(z_t), L, V(z_s)]
        if kappa == 1.0:
            np.testing.assert_allclose(kern, anc, atol=1e-6)
        q_t = np.asarray(proc.marginal_probs(jnp.full((1, L), x0), t[:1]))[0]  # [L, V]
        q_s = np.asarray(proc.marginal_probs(jnp.full((1, L), x0), s[:1]))[0]
        np.testing.assert_allclose(np.einsum("lz,zlv->lv", q_t, kern), q_s, atol=1e-6)


def test_per_position_remdm_kappa_is_per_position_and_psi_runs_with_it():
    res = dd.generate(jax.random.key(7), _exact(),
                      _config("psi", num_steps=8, kappa_schedule="remdm_cap", eta=0.05), 4, L,
                      schedule=schedules.PerTokenPolynomial(W))
    assert res.nfe == 8 and res.tokens.shape == (4, L) and int(res.tokens.max()) < K
    proc = processes.masked(K, schedules.PerTokenPolynomial(W))
    settings = {**sampling.SAMPLER_DEFAULTS, **psi.DEFAULTS, "num_steps": 10,
                "kappa_schedule": "remdm_cap", "eta": 0.05}
    t, s, kappa = psi.schedule(proc, settings)
    assert t.shape == (10,) and kappa.shape == (10, L)
    for pos in range(L):  # each position's column is ReMDM-cap with its own univariate alpha
        one = processes.masked(K, schedules.Polynomial(float(W[pos])))
        np.testing.assert_allclose(kappa[:, pos], psi.schedule(one, settings)[2], atol=1e-6)


def test_per_position_schedules_refuse_samplers_that_assume_one_clock():
    sched = schedules.PerTokenPolynomial(W)
    for name in ("first_hitting", "score_euler"):
        with pytest.raises(ValueError, match=rf"config.sampler.name='{name}' assumes one schedule "
                                             r"for every position.*'ordered_first_hitting'"):
            sampling.make_context(_exact(), _config(name), 2, L, schedule=sched)
    with pytest.raises(ValueError, match="kappa_schedule='remdm_loop' prescribes one alpha path"):
        dd.generate(jax.random.key(0), _exact(), _config("psi", kappa_schedule="remdm_loop"), 2, L,
                    schedule=sched)
    with pytest.raises(ValueError, match="has 3 powers; cannot sample seq_len=4"):
        dd.generate(jax.random.key(0), lambda x, t: jnp.zeros(x.shape + (K,)),
                    _config("ordered_first_hitting"), 2, 4, schedule=sched)


def test_ordered_first_hitting_is_a_registered_sampler():
    assert "ordered_first_hitting" in sampling.NAMES
    assert "ordered_first_hitting" in sampling.PROCESS_SAMPLERS["masked"]
    with pytest.raises(ValueError, match=r"is not one of \[.*'ordered_first_hitting'"):
        sampling.sampler_settings(_config("ordered_first_hiting"))
    with pytest.raises(ValueError, match="'ordered_first_hitting' does not apply to "
                                         "config.process.name='uniform'"):
        sampling.sampler_settings(ml_collections.ConfigDict({
            "process": {"name": "uniform"}, "sampler": {"name": "ordered_first_hitting"}}))
