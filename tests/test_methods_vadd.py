"""The 'vadd' method: the double ELBO and the importance-weighted bound on enumerable toys with a
one-dimensional latent and exact model functions of (x_t, z) (Gauss-Hermite quadrature over z),
the KL annealing, the latent samplers and prompting, config validation and partition rules.

The toys replace the two networks of `VADD` by exact functions (a subclass overrides
`decoder_logits` and `encode`), so the checks run the method's own code for the bound: the
masked cross-entropy with its weight w(t), the closed-form KL, the reparameterisation and (2).
"""

from __future__ import annotations

import itertools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion import config_validation, methods, sharding
from discrete_diffusion.methods import vadd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import synthetic_absorbing  # noqa: E402

NODES, GH_WEIGHTS = np.polynomial.hermite.hermgauss(60)  # int e^{-x^2} f(x) dx ~ sum w f(x)


def _config(K: int, Z: int = 1, **overrides):
    c = synthetic_absorbing.get_config()
    c.method.name = "vadd"
    c.process.num_classes = K
    c.process.schedule = "linear"
    c.model.size = "custom"
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.cond_dim = 1, 16, 2, 8
    c.model.latent_dim = Z
    c.model.dropout = 0.0
    for path, v in overrides.items():
        section, field = path.split("__")
        c[section][field] = v
    return c


class ToyVADD(vadd.VADD):
    """VADD whose denoiser and recognition model are given functions (no parameters)."""

    def __init__(self, config, num_classes, logits_fn, posterior_fn):
        super().__init__(config, num_classes)
        self.logits_fn, self.posterior_fn = logits_fn, posterior_fn

    def decoder_logits(self, params, x_t, t, z, *, train=False, key=None, output_positions=None):
        logits = self.logits_fn(x_t, z)
        if output_positions is None:
            return logits
        return jnp.take_along_axis(logits, output_positions[..., None], axis=1)

    def encode(self, params, x0, x_t, *, train=False, key=None):
        return self.posterior_fn(x0, x_t)


def _states(K: int, L: int) -> np.ndarray:
    return np.array(list(itertools.product(range(K), repeat=L)), np.int32)


def _corruptions(x0: np.ndarray, mask_id: int) -> tuple[np.ndarray, np.ndarray]:
    """All x_t of x_0 `[2^L, L]` and the number of masked positions of each."""
    L = x0.shape[0]
    masks = _states(2, L).astype(bool)
    return np.where(masks, mask_id, x0), masks.sum(-1)


def _linear_toy(K: int, L: int, seed: int = 0):
    """logits_i(x_t, z) = A[x_t, i] + z B[x_t, i], random tables over all (K + 1)^L states x_t."""
    rng = np.random.default_rng(seed)
    A = jnp.asarray(rng.normal(size=((K + 1) ** L, L, K)), jnp.float32)
    Bm = jnp.asarray(2.0 * rng.normal(size=((K + 1) ** L, L, K)), jnp.float32)
    radix = jnp.asarray((K + 1) ** np.arange(L)[::-1], jnp.int32)

    def logits_fn(x_t, z):
        code = jnp.sum(x_t * radix, axis=-1)
        return A[code] + z[:, :, None] * Bm[code]

    return logits_fn


def _quadrature_log_marginal(method, x0, x_t, nodes=NODES, weights=GH_WEIGHTS) -> np.ndarray:
    """log p(x_0 | x_t) = log int prod_{masked} mu(x_0 | x_t, z) N(z; 0, 1) dz `[B]`."""
    z = math.sqrt(2.0) * nodes  # N(0, 1) nodes
    B = x0.shape[0]
    ll = np.stack([np.asarray(vadd.masked_log_likelihood(
        method.decoder_logits({}, x_t, None, jnp.full((B, 1), zk, jnp.float32)), x0, x_t,
        method.proc.mask_id)) for zk in z])  # [nodes, B]
    log_w = np.log(weights / math.sqrt(math.pi))[:, None]
    return np.logaddexp.reduce(ll.astype(np.float64) + log_w, axis=0)


def _quadrature_delbo(method, x0, x_t, t) -> np.ndarray:
    """E_r[masked CE] + KL at (t, x_t), weighted by w(t) `[B]`: eps at the Gauss-Hermite nodes."""
    B = x0.shape[0]
    total = np.zeros(B)
    for xk, wk in zip(NODES, GH_WEIGHTS, strict=True):
        eps = jnp.full((B, 1), math.sqrt(2.0) * xk, jnp.float32)
        ce, kl = method.delbo_terms({}, x0, x_t, t, eps)
        total += wk / math.sqrt(math.pi) * np.asarray(ce).sum(-1)
    return total + np.asarray(kl)  # kl is the same at every node


def _pairs(K: int, L: int, mask_id: int):
    """Every (x_0, x_t) pair with q(x_t | x_0) > 0: x0 [P, L], x_t [P, L], masked counts [P]."""
    x0s, xts, ns = [], [], []
    for x0 in _states(K, L):
        xt, n = _corruptions(x0, mask_id)
        x0s.append(np.repeat(x0[None], len(xt), 0))
        xts.append(xt)
        ns.append(n)
    return (jnp.asarray(np.concatenate(x0s)), jnp.asarray(np.concatenate(xts)),
            np.concatenate(ns))


@pytest.mark.parametrize("t", [0.2, 0.7])
def test_delbo_is_above_the_exact_marginal_nelbo(t):
    """For any Gaussian r: per (x_0, x_t) the DELBO integrand >= w(t) (-log p(x_0 | x_t)), and so
    is its q(x_t | x_0)-average (the NELBO integrand at t); the gap is w(t) times the KL from r
    to the exact posterior."""
    K, L = 3, 3
    logits_fn = _linear_toy(K, L)
    rng = np.random.default_rng(1)
    tables = {"m": jnp.asarray(rng.normal(size=(4 ** L, 1)), jnp.float32),
              "v": jnp.asarray(rng.normal(size=(4 ** L, 1)) - 0.5, jnp.float32)}
    radix = jnp.asarray(4 ** np.arange(L)[::-1], jnp.int32)

    def posterior_fn(x0, x_t):  # any Gaussian, a function of (x_0, x_t)
        code = jnp.sum(jnp.where(x_t == K, x0, K) * radix, axis=-1)
        return tables["m"][code], tables["v"][code]

    method = ToyVADD(_config(K), K, logits_fn, posterior_fn)
    x0, x_t, n = _pairs(K, L, K)
    tt = jnp.full((x0.shape[0],), t, jnp.float32)
    w = float(method.nelbo_weight(jnp.array([t]))[0])
    assert w == pytest.approx(1.0 / t, rel=1e-5)  # linear schedule: w(t) = 1/t
    exact = -w * _quadrature_log_marginal(method, x0, x_t)
    delbo = _quadrature_delbo(method, x0, x_t, tt)
    assert np.all(delbo >= exact - 1e-4)
    assert np.all(delbo[n > 0] > exact[n > 0] + 1e-3)  # strict: r is never the exact posterior
    assert np.all(delbo[n == 0] >= 0) and np.all(np.abs(exact[n == 0]) < 1e-6)  # w KL vs 0
    # the NELBO integrand at t: average over x_t ~ q_t(. | x_0) (alpha = 1 - t), per x_0
    q = (t ** n) * ((1 - t) ** (L - n))
    per_x0_delbo = (q * delbo).reshape(-1, 2 ** L).sum(-1)
    per_x0_exact = (q * exact).reshape(-1, 2 ** L).sum(-1)
    assert np.all(per_x0_delbo > per_x0_exact)


def test_delbo_equals_the_marginal_nelbo_when_r_is_the_exact_posterior():
    """A denoiser whose likelihood of x_0 = 0...0 is Gaussian in z: mu_i(z)[0] = g exp(-a_i
    (z - c_i)^2), so p(z | x_0, x_t) = N(2 sum_masked a_i c_i / P, 1 / P), P = 1 + 2 sum_masked
    a_i. With that r the DELBO equals w(t) (-log p(x_0 | x_t)) (to quadrature and float32
    precision); moving r's mean or variance away makes it strictly larger."""
    K, L, g = 2, 3, 0.9
    a = jnp.array([0.7, 1.3, 0.4])
    c = jnp.array([0.5, -1.0, 1.5])

    def logits_fn(x_t, z):
        log_mu0 = jnp.log(g) - a * (z - c) ** 2  # [B, L] (z: [B, 1])
        return jnp.stack([log_mu0, jnp.log1p(-jnp.exp(log_mu0))], axis=-1)

    def exact_posterior(x0, x_t):
        m = (x_t == K).astype(jnp.float32)
        prec = 1.0 + 2.0 * jnp.sum(m * a, -1, keepdims=True)
        return 2.0 * jnp.sum(m * a * c, -1, keepdims=True) / prec, -jnp.log(prec)

    x_t, n = _corruptions(np.zeros(L, np.int32), K)
    x0 = jnp.zeros(x_t.shape, jnp.int32)
    x_t = jnp.asarray(x_t)
    t = jnp.full((x0.shape[0],), 0.4, jnp.float32)
    method = ToyVADD(_config(K), K, logits_fn, exact_posterior)
    exact = -2.5 * _quadrature_log_marginal(method, x0, x_t)
    np.testing.assert_allclose(_quadrature_delbo(method, x0, x_t, t), exact, rtol=2e-5, atol=2e-5)
    assert np.all(exact[n > 0] > 0.1)
    for dm, dv in ((0.3, 0.0), (0.0, 0.5), (-0.2, -0.4)):
        method.posterior_fn = lambda x0_, x_t_, dm=dm, dv=dv: tuple(
            v + d for v, d in zip(exact_posterior(x0_, x_t_), (dm, dv), strict=True))
        off = _quadrature_delbo(method, x0, x_t, t)
        assert np.all(off[n > 0] > exact[n > 0] + 1e-3)


def test_importance_weighted_bound_tightens_with_the_number_of_samples():
    """E[(2)] with S samples of a poor r (N(0.8, 0.5^2) for every (x_0, x_t)) decreases in S from
    the DELBO (S = 1) towards w(t) (-log p(x_0 | x_t)), staying above it (Burda et al. 2016).
    Expectations by Monte Carlo over 4000 replicates with nested sample sets (the first S of 64)."""
    K, L, t, R = 3, 3, 0.5, 4000
    logits_fn = _linear_toy(K, L, seed=3)

    def posterior_fn(x0, x_t):
        B = x0.shape[0]
        return jnp.full((B, 1), 0.8), jnp.full((B, 1), math.log(0.25))

    method = ToyVADD(_config(K), K, logits_fn, posterior_fn)
    x0 = jnp.asarray([[0, 1, 2], [2, 2, 0]], jnp.int32)
    x_t = jnp.asarray([[K, K, K], [K, 2, K]], jnp.int32)
    exact = -(1.0 / t) * _quadrature_log_marginal(method, x0, x_t)  # [2]
    delbo = _quadrature_delbo(method, x0, x_t, jnp.full((2,), t))
    eps = jax.random.normal(jax.random.key(0), (64, R, 2, 1))
    x0r, x_tr = jnp.tile(x0, (R, 1)), jnp.tile(x_t, (R, 1))
    tr = jnp.full((2 * R,), t)
    means, ses = [], []
    for S in (1, 2, 4, 8, 16, 64):
        b = np.asarray(method.iwae_terms({}, x0r, x_tr, tr, eps[:S].reshape(S, 2 * R, 1)))
        b = b.reshape(R, 2)
        means.append(b.mean(0))
        ses.append(b.std(0) / math.sqrt(R))
    means, ses = np.array(means), np.array(ses)
    np.testing.assert_allclose(means[0], delbo, atol=4 * ses[0].max())  # S = 1: the DELBO
    assert np.all(np.diff(means, axis=0) < 0)  # monotone in S
    assert np.all(means > exact[None, :] - 3 * ses)
    assert np.all(means[-1] - exact < 0.1 * (delbo - exact))  # most of the gap closed at S = 64
    assert np.all(delbo - exact > 0.3)  # the proposal is poor: the test has a gap to close


def _tiny_method(**overrides):
    config = _config(6, Z=2, **overrides)
    method = methods.get(config, 6)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (4, 10), 0, 6)}
    return config, method, batch, method.init(jax.random.key(1), batch)


def test_kl_annealing_and_nelbo_aux():
    """loss = (sum CE + lambda(step) sum w KL) / (B L) with lambda = min(1, step / warmup); the
    aux NELBO is the DELBO (lambda = 1) whatever the step; an untrained encoder is N(0, I)."""
    config, method, batch, params = _tiny_method(training__kl_warmup_steps=10)
    assert set(params) == {"network", "encoder"}
    key = jax.random.key(2)
    prepared = method.prepare(batch, key)
    loss_fn = jax.jit(lambda p, s: method.loss(p, prepared, key, step=s))
    l0, aux0 = loss_fn(params, jnp.array(0))
    assert float(aux0["metrics"]["delbo_kl"]) == 0.0  # zero-init head: r = N(0, I)
    # move the encoder's head so that KL > 0
    head = params["encoder"]["head"]
    params = {**params, "encoder": {**params["encoder"], "head": {
        "kernel": head["kernel"] + 0.3, "bias": head["bias"] + 0.2}}}
    B, L = batch["tokens"].shape
    ce, kl = jax.jit(method.delbo_terms)(params, prepared["tokens"], prepared["x_t"],
                                         prepared["t"], prepared["eps"])
    assert float(jnp.min(kl)) > 0
    for step, lam in ((0, 0.0), (5, 0.5), (10, 1.0), (40, 1.0)):
        loss, aux = loss_fn(params, jnp.array(step))
        np.testing.assert_allclose(float(loss), float(jnp.sum(ce) + lam * jnp.sum(kl)) / (B * L),
                                   rtol=1e-5)
        np.testing.assert_allclose(float(jnp.sum(aux["nelbo"])), float(jnp.sum(ce) + jnp.sum(kl)),
                                   rtol=1e-5)
        assert float(aux["metrics"]["kl_weight"]) == lam
    assert vadd.kl_weight(jnp.array(3), 0) == 1.0
    d = jax.jit(lambda p: method.delbo_samples(p, batch, key, 2))(params)
    i = jax.jit(lambda p: method.iwae_samples(p, batch, key, 2, 3))(params)
    assert d.shape == i.shape == (4, 2) and np.all(np.isfinite(d)) and np.all(np.isfinite(i))


def test_step_latents_fresh_per_step_and_sample():
    key = jax.random.key(0)
    a = vadd.step_latents(key, jnp.array([0.5, 0.5, 0.25]), 3)
    b = vadd.step_latents(key, jnp.array([0.5, 0.75, 0.25]), 3)
    assert a.shape == (3, 3)
    np.testing.assert_array_equal(a[0], b[0])  # same (sample, time): the same z
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.allclose(a[1], b[1]) and not np.allclose(a[0], a[1])  # new time / new sample
    # with the sampler's step index: z follows the step, not t
    c = vadd.step_latents(key, jnp.array([0.5, 0.5, 0.25]), 3, jnp.int32(4))
    d = vadd.step_latents(key, jnp.array([0.5, 0.75, 0.25]), 3, jnp.int32(4))
    e = vadd.step_latents(key, jnp.array([0.5, 0.5, 0.25]), 3, jnp.int32(5))
    np.testing.assert_array_equal(c, d)
    assert not np.any(np.isclose(c, e))


def test_psi_remdm_loop_draws_a_fresh_latent_at_every_step():
    """VADD's Algorithm 2 under psi with 'remdm_loop' (20 steps, the hold repeats t): the decoder
    sees 20 distinct z per sample (with z from the bits of t the hold shared one: 10 distinct)."""
    seen = []

    def logits_fn(x_t, z):
        jax.debug.callback(lambda z: seen.append(np.asarray(z)), z)
        return jnp.zeros(x_t.shape + (3,), jnp.float32)

    config = _config(3, Z=2, sampler__name="psi", sampler__kappa_schedule="remdm_loop",
                     sampler__num_steps=20, sampler__latent="per_step")
    method = ToyVADD(config, 3, logits_fn, None)
    method.generate({}, jax.random.key(0), 2, 4)
    z = np.stack(seen)  # [calls, N, Z]
    assert z.shape == (20, 2, 2)
    for n in range(2):
        assert len({tuple(np.round(v, 6)) for v in z[:, n]}) == 20


@pytest.mark.parametrize("sampler, latent", [("ancestral", "per_step"),
                                             ("first_hitting", "per_step"),
                                             ("first_hitting", "per_trajectory")])
def test_generate_latent_modes_and_prompting(sampler, latent):
    config, method, _, params = _tiny_method(sampler__latent=latent, sampler__name=sampler)
    config_validation.validate(config)
    N, L = 3, 10
    prompt = jnp.tile(jnp.arange(L) % 6, (N, 1)).astype(jnp.int32)
    pmask = jnp.zeros((N, L), bool).at[:, :4].set(True)
    res = method.generate(params, jax.random.key(5), N, L, prompt_tokens=prompt, prompt_mask=pmask)
    assert res.tokens.shape == (N, L)
    assert np.all((res.tokens >= 0) & (res.tokens < 6))
    np.testing.assert_array_equal(res.tokens[:, :4], prompt[:, :4])


def test_per_trajectory_uses_one_latent():
    """per_trajectory = the sampler run on the denoiser with a fixed z per sample (the z of the
    generate key's first half); per_step differs from it."""
    config, method, _, params = _tiny_method(sampler__latent="per_trajectory", sampler__num_steps=4)
    # a denoiser that reads z strongly: randomise the latent embedding and the adaLN of the output
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda x: x + jnp.asarray(0.5 * rng.normal(size=x.shape), x.dtype), params)
    key = jax.random.key(7)
    k_z, k_run = jax.random.split(key)
    z = jax.random.normal(k_z, (8, 2))
    from discrete_diffusion import sampling

    plain = config.copy_and_resolve_references()
    del plain.sampler["latent"]
    def fixed_z(x_t, t, output_positions=None):
        return method.decoder_logits(params, x_t, t, z, output_positions=output_positions)

    ref = sampling.generate(k_run, fixed_z, plain, 8, 10)
    res = method.generate(params, key, 8, 10)
    np.testing.assert_array_equal(res.tokens, ref.tokens)
    sc = config.sampler.copy_and_resolve_references()
    sc.latent = "per_step"
    assert not np.array_equal(method.generate(params, key, 8, 10, sc).tokens, ref.tokens)


@pytest.mark.parametrize("path, value, message", [
    ("sampler.latent", "per_token", "config.sampler.latent='per_token' is not one of"),
    ("model.latent_dim", 0, "config.model.latent_dim=0 must be an int >= 1"),
    ("training.kl_warmup_steps", -1, "config.training.kl_warmup_steps=-1 must lie in"),
    ("eval.iwae_samples", -2, "config.eval.iwae_samples=-2 must lie in"),
    ("process.name", "uniform", "config.process.name='uniform' is not one of ['masked']"),
    ("method.encoder_layers", 0, "config.method.encoder_layers=0"),
])
def test_validation_names_the_field(path, value, message):
    config = _config(6, Z=2)
    config_validation.validate(config)
    section, field = path.split(".")
    config[section][field] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        config_validation.validate(config)


def test_partition_rules_cover_every_parameter():
    _, method, _, params = _tiny_method()
    rules = tuple(method.partition_rules) + tuple(sharding.RULES)
    specs = sharding.param_specs(params, rules)
    assert len(jax.tree_util.tree_leaves(specs, is_leaf=lambda s: isinstance(s, sharding.P))) == len(
        jax.tree_util.tree_leaves(params))
    assert "latent_embed" in params["network"] and "mask_repr" in params["encoder"]


def _mixture_toy(K: int, L: int, seed: int = 0):
    """A mixture of two product laws p = pi_0 P_0 + pi_1 P_1 over K^L and its exact
    latent-conditioned denoiser with a 1-d z: the component c(z, x_t) = 1[Phi(z) >= p(c = 0 |
    x_t)] and mu^i(x_t, z) = P_c^i. Integrating z ~ N(0, 1) out of prod_i p(x_s^i | x_t, z) gives
    sum_c p(c | x_t) prod_i q(x_s^i | x_t^i, c), the exact reverse kernel at every step."""
    rng = np.random.default_rng(seed)
    pi = np.array([0.45, 0.55])
    comps = rng.dirichlet(np.full(K, 0.3), size=(2, L))  # [2, L, K]
    p = sum(pi[c] * np.einsum("i,j,k->ijk", *comps[c]) for c in range(2))
    log_pi, log_comp = jnp.log(jnp.asarray(pi)), jnp.log(jnp.asarray(comps, jnp.float32))

    def logits_fn(x_t, z):
        seen = x_t < K  # [N, L]
        idx = jnp.where(seen, x_t, 0)
        ll = log_comp[:, jnp.arange(L)[None, :], idx]  # [2, N, L]: log P_c^i(x_t^i)
        log_post = log_pi[:, None] + jnp.sum(jnp.where(seen[None], ll, 0.0), -1)  # [2, N]
        p0 = jax.nn.softmax(log_post, axis=0)[0]  # [N]
        c = (jax.scipy.stats.norm.cdf(z[:, 0]) >= p0).astype(jnp.int32)  # [N]
        return log_comp[c]  # [N, L, K]

    return p, comps, logits_fn


def test_exact_latent_denoiser_is_at_the_tv_floor_where_mdm_is_not():
    """L = K = 3, a mixture of two product laws: one-step masked diffusion samples the product of
    the marginals (TV(prod marginals, p) > 0 even with the exact denoiser), while VADD's ancestral
    sampler with the exact latent-conditioned denoiser and a fresh z per step is at the TV floor
    at 1 step and at 4 steps."""
    from discrete_diffusion.testing import oracle

    K, L, n = 3, 3, 20000
    p, comps, logits_fn = _mixture_toy(K, L)
    marg = [p.sum(axis=tuple(j for j in range(L) if j != i)) for i in range(L)]
    tv_product = oracle.total_variation(np.einsum("i,j,k->ijk", *marg).reshape(-1), p.reshape(-1))
    floor = oracle.expected_tv_floor(p.reshape(-1), n)
    bound = oracle.tv_bound(p.reshape(-1), n)  # exact: below, but for a 5-SD tail
    assert tv_product > 20 * floor
    method = ToyVADD(_config(K, sampler__name="ancestral", sampler__latent="per_step"), K,
                     logits_fn, None)
    for steps in (1, 4):
        sc = method.config.sampler.copy_and_resolve_references()
        sc.num_steps = steps
        toks = method.generate({}, jax.random.key(steps), n, L, sc).tokens
        tv = oracle.total_variation(oracle.empirical_law(np.asarray(toks), K), p.reshape(-1))
        assert tv < bound, (steps, tv, floor)
    # the same denoiser with z fixed at 0 (a plain MDM denoiser that ignores the mixture) at 1 step
    plain = ToyVADD(_config(K, sampler__num_steps=1, sampler__latent="per_trajectory"), K,
                    lambda x_t, z: logits_fn(x_t, jnp.zeros_like(z)), None)
    toks = plain.generate({}, jax.random.key(9), n, L).tokens
    assert oracle.total_variation(oracle.empirical_law(np.asarray(toks), K), p.reshape(-1)) > 5 * floor


def test_checkerboard_law_and_js():
    from discrete_diffusion.data import checkerboard

    p = checkerboard.law()
    assert p.shape == (32, 32) and np.isclose(p.sum(), 1.0) and np.count_nonzero(p) == 512
    np.testing.assert_allclose(p.sum(0), 1 / 32)  # uniform marginals
    uniform = np.full((32, 32), 1 / 1024)  # what independent coordinates give
    assert checkerboard.js_divergence(uniform, p) == pytest.approx(0.75 * math.log(4 / 3), rel=1e-9)
    assert checkerboard.js_divergence(p, p) == 0.0
    toks = checkerboard.sample(np.random.default_rng(0), 50_000)
    assert checkerboard.js_divergence(checkerboard.histogram(toks), p) < 0.01


def test_the_delbo_is_not_a_likelihood_bound_but_the_marginal_nelbo_is():
    """For the exact latent model of a mixture of two product laws (its samplers draw exactly p),
    E_p of the joint 'marginal NELBO' int w E_q[-log p(x_0 | x_t)] dt (which the DELBO bounds) is
    *below* H(p), so neither is an upper bound on -log p; the sampler's NELBO (3), MDLM's with the
    z-marginal denoiser, equals H(p) for this exact model. `marginal_terms` estimates (3)'s
    integrand (here with r = N(0, 1), 4000 latents) to within Monte-Carlo error (a few %)."""
    K, L = 3, 3
    p, comps, logits_fn = _mixture_toy(K, L, seed=2)
    flat = p.reshape(-1)
    H = -np.sum(flat * np.log(flat))
    x0s = _states(K, L)
    joint = marginal = 0.0
    for M in itertools.product([0, 1], repeat=L):
        M = np.array(M, bool)
        n = int(M.sum())
        if n == 0:
            continue
        coef = math.factorial(n - 1) * math.factorial(L - n) / math.factorial(L)  # int t^(n-1)(1-t)^(L-n)
        p_u = p.sum(axis=tuple(np.flatnonzero(M)), keepdims=True)  # p(x_U), masked axes summed
        for x0, px in zip(x0s, flat, strict=True):
            cond = p[tuple(x0)] / p_u[tuple(np.where(M, 0, x0))]  # p(x_M | x_U)
            joint += px * coef * -np.log(cond)
            for i in np.flatnonzero(M):  # p(x_i | x_U)
                axes = tuple(j for j in np.flatnonzero(M) if j != i)
                p_iu = p.sum(axis=axes, keepdims=True)[tuple(np.where(M & (np.arange(L) != i), 0, x0))]
                marginal += px * coef * -np.log(p_iu / p_u[tuple(np.where(M, 0, x0))])
    assert joint < H - 0.05
    assert marginal == pytest.approx(H, rel=1e-6)

    method = ToyVADD(_config(K), K, logits_fn,
                     lambda x0, x_t: (jnp.zeros((x0.shape[0], 1)), jnp.zeros((x0.shape[0], 1))))
    x0, x_t, _ = _pairs(K, L, K)
    t = jnp.full((x0.shape[0],), 0.5)
    eps = jax.random.normal(jax.random.key(0), (4000, x0.shape[0], 1))
    got = np.asarray(jax.jit(method.marginal_terms)({}, x0, x_t, t, eps))
    mu_bar = np.zeros(got.shape)  # exact: w(t) (-log p(x_0^i | x_t)), w = 1/t = 2
    for b, (a, y) in enumerate(zip(np.asarray(x0), np.asarray(x_t), strict=True)):
        M = y == K
        for i in np.flatnonzero(M):
            axes = tuple(j for j in np.flatnonzero(M) if j != i)
            num = p.sum(axis=axes, keepdims=True)[tuple(np.where(M & (np.arange(L) != i), 0, a))]
            den = p.sum(axis=tuple(np.flatnonzero(M)), keepdims=True)[tuple(np.where(M, 0, a))]
            mu_bar[b, i] = -2.0 * np.log(num / den)
    np.testing.assert_allclose(got, mu_bar, rtol=0.06, atol=0.05)  # -log of a 4000-sample mean


def test_free_bits_value_and_gradient():
    """KL_fb = sum_j max(lambda, KL_j): its value, and its gradient (that of KL_j where KL_j >
    lambda, 0 elsewhere), exactly; the loss uses it (times w(t) and lambda(step)) while aux['nelbo']
    stays the DELBO."""
    mean = jnp.array([[0.1, 1.2, -0.9], [0.0, 0.3, 2.0]])
    logvar = jnp.array([[0.05, -0.4, 0.7], [0.0, -1.5, 0.2]])
    kl_j = 0.5 * (mean**2 + jnp.exp(logvar) - 1.0 - logvar)
    lam = 0.3
    above = np.asarray(kl_j) > lam
    assert above.any() and (~above).any()  # both regimes present
    np.testing.assert_allclose(vadd.free_bits_kl(mean, logvar, lam),
                               np.where(above, kl_j, lam).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(vadd.free_bits_kl(mean, logvar, 0.0),
                               vadd.gaussian_kl(mean, logvar), rtol=1e-6)
    g_m, g_v = jax.grad(lambda m, v: jnp.sum(vadd.free_bits_kl(m, v, lam)), (0, 1))(mean, logvar)
    np.testing.assert_allclose(g_m, np.where(above, mean, 0.0), rtol=1e-6)
    np.testing.assert_allclose(g_v, np.where(above, 0.5 * (np.exp(logvar) - 1.0), 0.0),
                               rtol=1e-6, atol=1e-7)
    # in the method's loss: sum_b lambda(step) w(t_b) sum_j max(fb, KL_bj) in place of w KL
    fb = 0.02
    config, method, batch, params = _tiny_method(training__kl_free_bits=fb,
                                                 training__kl_warmup_steps=4)
    head = params["encoder"]["head"]
    params = {**params, "encoder": {**params["encoder"], "head": {
        "kernel": head["kernel"] + 0.05, "bias": head["bias"] + jnp.linspace(-0.2, 0.2,
                                                                          head["bias"].shape[0])}}}
    key = jax.random.key(3)
    prepared = method.prepare(batch, key)
    ce, mean, logvar = method._delbo_parts(params, prepared["tokens"], prepared["x_t"],
                                           prepared["t"], prepared["eps"])  # op by op: no compile
    kl_j = np.asarray(vadd.gaussian_kl_dims(mean, logvar))
    assert (kl_j > fb).any() and (kl_j < fb).any()
    w = np.asarray(method.nelbo_weight(prepared["t"]))
    B, L = batch["tokens"].shape
    loss, aux = method.loss(params, prepared, key, step=jnp.array(2))
    want = (float(jnp.sum(ce)) + 0.5 * float(np.sum(w * np.maximum(fb, kl_j).sum(-1)))) / (B * L)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(aux["nelbo"])),
                               float(jnp.sum(ce)) + float(np.sum(w * kl_j.sum(-1))), rtol=1e-5)
    assert float(aux["metrics"]["kl_active_dims"]) == float(np.sum(kl_j.mean(0) > 0.01))
    with pytest.raises(ValueError, match=r"config.training.kl_free_bits=-0.1 must be a number"):
        config_validation.validate(_config(6, Z=2, training__kl_free_bits=-0.1))


def _time_weights(L: int, t_min: float) -> np.ndarray:
    """c(n) = (1 / (1 - t_min)) int_{t_min}^1 w(t) t^n (1 - t)^(L - n) dt, w = 1/t (linear
    schedule), for n = 1 .. L (index n): the weight of an x_t with n masked positions in the
    estimators' target (t ~ U[t_min, 1])."""
    P = np.polynomial.polynomial
    c = np.zeros(L + 1)
    for n in range(1, L + 1):
        poly = P.polymul(P.polypow([0, 1], n - 1), P.polypow([1, -1], L - n))
        integ = P.polyint(poly)
        c[n] = (P.polyval(1.0, integ) - P.polyval(t_min, integ)) / (1.0 - t_min)
    return c


def test_held_out_bounds_equal_their_exact_values():
    """`eval_bounds` on the linear toy (K = L = 3, 1-d z, a Gaussian r that is N(0, 1) where nothing
    is masked): over all 27 x_0, replicated, each estimator's mean equals its exact expectation,
    computed by enumerating the masks (their t-integrals c(n) in closed form on [t_min, 1]) and
    Gauss-Hermite quadrature over the latents (two-dimensional for S = 2):
    'delbo' = sum_M c(|M|) (E_r[CE] + KL); 'iw_delbo' = sum_M c(|M|) E[(2) with S = 2];
    'marginal_nelbo' (= 'nelbo') = sum_M c(|M|) sum_{i in M} E[-log of the 2-latent mixture estimate
    of mu-bar^i], above the exact (3) = sum_M c(|M|) sum_i -log mu-bar^i; 'trajectory_nelbo' =
    KL(r_1) + sum_M c(|M|) E_{r_1}[CE]. Tolerance: 4 standard errors of the replicate mean."""
    K, L, R, num_t = 3, 3, 300, 4
    logits_fn = _linear_toy(K, L, seed=5)
    rng = np.random.default_rng(6)
    tab_m = jnp.asarray(rng.normal(size=(4 ** L, 1)), jnp.float32)
    tab_v = jnp.asarray(0.6 * rng.normal(size=(4 ** L, 1)) - 0.8, jnp.float32)
    radix = jnp.asarray(4 ** np.arange(L)[::-1], jnp.int32)

    def posterior_fn(x0, x_t):
        code = jnp.sum(jnp.where(x_t == K, x0, K) * radix, axis=-1)
        any_masked = jnp.any(x_t == K, axis=-1, keepdims=True)
        return jnp.where(any_masked, tab_m[code], 0.0), jnp.where(any_masked, tab_v[code], 0.0)

    method = ToyVADD(_config(K, eval__iwae_samples=2), K, logits_fn, posterior_fn)
    c = _time_weights(L, method.t_min)
    # exact values per x_0 `[27]`
    x0p, xtp, n = _pairs(K, L, K)  # 27 * 8 pairs
    cn = c[n]
    nodes, gw = np.polynomial.hermite.hermgauss(30)
    zn, gw = math.sqrt(2.0) * nodes, gw / math.sqrt(math.pi)  # N(0, 1) nodes, weights
    mean, logvar = (np.asarray(a)[:, 0].astype(np.float64) for a in posterior_fn(x0p, xtp))
    sd = np.exp(0.5 * logvar)
    kl = 0.5 * (mean**2 + sd**2 - 1.0 - logvar)
    masked = np.asarray(xtp) == K

    def log_mu(z):  # z [P] -> log mu^i(x_t, z)[x_0^i] [P, L]
        lg = jax.nn.log_softmax(logits_fn(xtp, jnp.asarray(z, jnp.float32)[:, None]), -1)
        return np.asarray(jnp.take_along_axis(lg, x0p[..., None], -1)[..., 0], np.float64)

    def log_n(z, m=0.0, s=1.0):
        return -0.5 * ((z - m) / s) ** 2 - np.log(s) - 0.5 * math.log(2 * math.pi)

    zr = mean[None] + sd[None] * zn[:, None]  # [30, P]: r's nodes
    lm_r = np.stack([log_mu(z) for z in zr])  # [30, P, L]
    lm_n = np.stack([log_mu(np.full(len(n), z)) for z in zn])  # [30, P, L]
    ce_r = -np.where(masked, lm_r, 0.0).sum(-1)  # [30, P]
    delbo = cn * (gw @ ce_r + kl)
    ll_r = -ce_r
    lw_r = ll_r + log_n(zr) - log_n(zr, mean, sd)  # [30, P]
    iw = -np.logaddexp(lw_r[:, None], lw_r[None, :]) + math.log(2.0)  # [30, 30, P]
    iw = cn * np.einsum("a,b,abp->p", gw, gw, iw)
    # marginal: z_1 ~ r, z_2 ~ N(0, 1), weights N / q, q = (r + N) / 2
    def log_wq(z):
        return log_n(z) - np.logaddexp(log_n(z, mean, sd), log_n(z)) + math.log(2.0)
    a1 = lm_r + log_wq(zr)[..., None]  # [30, P, L]
    a2 = lm_n + log_wq(np.broadcast_to(zn[:, None], zr.shape))[..., None]
    est = -np.logaddexp(a1[:, None], a2[None, :]) + math.log(2.0)  # [30, 30, P, L]
    marg = cn * np.where(masked, np.einsum("a,b,abpl->pl", gw, gw, est), 0.0).sum(-1)
    exact3 = cn * np.where(masked, -np.log(np.einsum("a,apl->pl", gw, np.exp(lm_n))), 0.0).sum(-1)
    # trajectory: r_1 = r(. | x_0, all masked), the same for the 8 masks of an x_0
    full = jnp.full_like(x0p, K)
    m1, v1 = (np.asarray(a)[:, 0].astype(np.float64) for a in posterior_fn(x0p, full))
    s1 = np.exp(0.5 * v1)
    lm_1 = np.stack([log_mu(m1 + s1 * z) for z in zn])
    traj = cn * (gw @ -np.where(masked, lm_1, 0.0).sum(-1))
    kl1 = (0.5 * (m1**2 + s1**2 - 1.0 - v1)).reshape(-1, 2 ** L)[:, 0]
    per_x0 = {k: v.reshape(-1, 2 ** L).sum(-1) for k, v in
              {"delbo": delbo, "iw_delbo": iw, "marginal_nelbo": marg, "exact3": exact3,
               "trajectory_nelbo": traj}.items()}
    per_x0["trajectory_nelbo"] = per_x0["trajectory_nelbo"] + kl1
    assert np.all(per_x0["iw_delbo"] < per_x0["delbo"])
    assert np.all(per_x0["marginal_nelbo"] > per_x0["exact3"])  # Jensen: S = 2 is above (3)

    x0 = jnp.asarray(np.tile(_states(K, L), (R, 1)))
    got = jax.jit(method.eval_bounds, static_argnums=3)({}, {"tokens": x0}, jax.random.key(11),
                                                          num_t)
    assert set(got) == {"nelbo", "marginal_nelbo", "trajectory_nelbo", "delbo", "iw_delbo"}
    np.testing.assert_array_equal(got["nelbo"], got["marginal_nelbo"])
    for name in ("delbo", "iw_delbo", "marginal_nelbo", "trajectory_nelbo"):
        s = np.asarray(got[name], np.float64).mean(1).reshape(R, -1)  # [R, 27] per sequence
        se = math.sqrt(np.mean(s.var(0, ddof=1)) / s.size)  # of the mean over x_0 and replicates
        assert abs(s.mean() - per_x0[name].mean()) < 4 * se, (name, s.mean(), per_x0[name].mean(), se)
        assert se < 0.02 * per_x0[name].mean()  # the check has teeth


def test_decoder_logits_at_output_positions_equal_the_full_logits_there():
    """The samplers' few-position calls (`output_positions`) read the full decoder's logits."""
    _, method, batch, params = _tiny_method()
    x_t = jnp.where(jax.random.bernoulli(jax.random.key(3), 0.5, batch["tokens"].shape),
                    method.proc.mask_id, batch["tokens"])
    t = jnp.full((4,), 0.6)
    z = jax.random.normal(jax.random.key(4), (4, 2))
    pos = jnp.array([[0, 3], [9, 1], [2, 2], [5, 7]], jnp.int32)
    full = method.decoder_logits(params, x_t, t, z)
    at = method.decoder_logits(params, x_t, t, z, output_positions=pos)
    np.testing.assert_allclose(at, jnp.take_along_axis(full, pos[..., None], axis=1), atol=1e-5)
