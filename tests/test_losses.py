"""Objectives: their forms agree, they are >= 0, the NELBO is tight at the exact model (it equals
the data entropy), and each population minimizer is what the papers say."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import discrete_diffusion as dd
from discrete_diffusion import losses
from discrete_diffusion.testing import oracle

K, L = 3, 2


def _random_inputs(proc, seed, n=64):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    logits = 3.0 * jax.random.normal(k1, (n, L, proc.num_classes))
    x0 = jax.random.randint(k2, (n, L), 0, proc.num_classes)
    t = jax.random.uniform(k3, (n,), minval=0.02, maxval=0.98)
    x_t = proc.sample_marginal(k4, x0, t)
    return logits, x0, x_t, t


def _pairs(orc):
    """All (x0, x_t) pairs with their joint probability."""
    A, B = len(orc.x0s), len(orc.xts)
    X0 = jnp.asarray(np.repeat(orc.x0s, B, axis=0), jnp.int32)
    XT = jnp.asarray(np.tile(orc.xts, (A, 1)), jnp.int32)
    return X0, XT, orc.joint.reshape(-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uniform_udlm_and_rao_blackwellized_forms_agree(seed):
    proc = dd.processes.uniform(5)
    logits, x0, x_t, t = _random_inputs(proc, seed)
    a = losses.uniform_nelbo(proc, logits, x0, x_t, t)
    b = losses.uniform_nelbo_rb(proc, logits, x0, x_t, t)
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert float(a.min()) >= -1e-5


@pytest.mark.parametrize("name", ["masked", "uniform"])
@pytest.mark.parametrize("parameterization", ["denoiser", "loo"])
def test_score_entropy_of_converted_score_equals_nelbo(name, parameterization):
    proc = getattr(dd.processes, name)(5)
    logits, x0, x_t, t = _random_inputs(proc, 3)
    elbo = losses.loss_per_token(proc, parameterization, "elbo", logits, x0, x_t, t)
    se = losses.loss_per_token(proc, parameterization, "score_entropy", logits, x0, x_t, t)
    np.testing.assert_allclose(se, elbo, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["masked", "uniform"])
@pytest.mark.parametrize("parameterization", ["denoiser", "loo", "score"])
@pytest.mark.parametrize("loss", losses.NAMES)
def test_every_objective_is_nonnegative_and_finite(name, parameterization, loss):
    proc = getattr(dd.processes, name)(5)
    logits, x0, x_t, t = _random_inputs(proc, 4)
    val = losses.loss_per_token(proc, parameterization, loss, logits, x0, x_t, t)
    assert np.all(np.isfinite(val))
    assert float(val.min()) >= -1e-5


def test_zero_at_the_perfect_model():
    proc = dd.processes.uniform(5)
    _, x0, x_t, t = _random_inputs(proc, 5)
    perfect = 30.0 * jax.nn.one_hot(x0, 5)  # rho = onehot(x0): the data is deterministic
    np.testing.assert_allclose(losses.uniform_nelbo_rb(proc, perfect, x0, x_t, t), 0.0, atol=1e-4)
    mproc = dd.processes.masked(5)
    np.testing.assert_allclose(losses.masked_nelbo(mproc, perfect, x0, x_t, t), 0.0, atol=1e-4)


@pytest.mark.parametrize("name", ["masked", "uniform"])
@pytest.mark.parametrize("parameterization", ["denoiser", "loo"])
@pytest.mark.parametrize("loss", ["elbo", "score_entropy"])
def test_nelbo_is_tight_at_the_exact_model(name, parameterization, loss):
    """E_{x0} int_0^1 E_{x_t} NELBO dt = H(p_data) when the network is exact (alpha_1 = 0)."""
    p0 = oracle.toy_law(K, L, seed=1)
    entropy = float(-(p0 * np.log(p0)).sum())
    proc = getattr(dd.processes, name)(K)
    model = oracle.exact_model_fn(p0, proc, parameterization)
    # Gauss-Legendre on u with t = (1 - cos(pi u))/2: nodes cluster at both singular ends.
    nodes, weights = np.polynomial.legendre.leggauss(64)
    u = 0.5 * (nodes + 1)
    ts = (1 - np.cos(np.pi * u)) / 2
    ws = 0.5 * weights * (np.pi / 2) * np.sin(np.pi * u)
    total = 0.0
    for t, w in zip(ts, ws, strict=True):
        orc = oracle.Oracle(p0, name, float(proc.alpha(t)))
        X0, XT, joint = _pairs(orc)
        tt = jnp.full((len(XT),), t)
        per_seq = losses.loss_per_token(proc, parameterization, loss, model(XT, tt), X0, XT, tt)
        per_seq = np.where(joint > 0, np.asarray(per_seq.sum(-1), np.float64), 0.0)
        total += w * float((joint * per_seq).sum())
    assert abs(total - entropy) < 2e-5, (total, entropy)


def _minimize_table(proc, parameterization, loss, t, p0, steps=3000):
    """Minimizes the population objective at time t over a free table of logits per x_t."""
    orc = oracle.Oracle(p0, proc.name, float(proc.alpha(t)))
    X0, XT, joint = _pairs(orc)
    B = len(orc.xts)
    table_index = jnp.asarray(np.tile(np.arange(B), len(orc.x0s)))
    w = jnp.asarray(joint, jnp.float32)
    tt = jnp.full((len(XT),), t)

    def objective(table):
        logits = table[table_index]
        per = losses.loss_per_token(proc, parameterization, loss, logits, X0, XT, tt).sum(-1)
        return jnp.sum(w * per)

    table = jnp.zeros((B, L, proc.num_classes))
    opt = optax.adam(0.05)
    state = opt.init(table)

    @jax.jit
    def step(carry, _):
        table, state = carry
        g = jax.grad(objective)(table)
        upd, state = opt.update(g, state)
        return (optax.apply_updates(table, upd), state), None

    (table, _), _ = jax.lax.scan(step, (table, state), None, length=steps)
    return orc, np.asarray(jax.nn.softmax(table, -1))


def test_uniform_plugin_nelbo_is_minimized_by_the_loo_posterior():
    p0 = oracle.toy_law(K, L, seed=2)
    proc = dd.processes.uniform(K)
    orc, table = _minimize_table(proc, "loo", "elbo", 0.5, p0)
    rho = np.stack([orc.loo(x) for x in orc.xts])
    mu = np.stack([orc.denoiser(x) for x in orc.xts])
    np.testing.assert_allclose(table, rho, atol=2e-3)
    assert np.abs(rho - mu).max() > 0.1  # the two targets really differ here


def test_cross_entropy_is_minimized_by_the_denoiser():
    p0 = oracle.toy_law(K, L, seed=2)
    for name in ("uniform", "masked"):
        proc = getattr(dd.processes, name)(K)
        orc, table = _minimize_table(proc, "denoiser", "denoising_ce", 0.5, p0)
        mu = np.stack([orc.denoiser(x) for x in orc.xts])
        noisy = np.asarray(proc.is_noisy(jnp.asarray(orc.xts)))
        reached = orc.pt > 0
        np.testing.assert_allclose(table[reached][noisy[reached]], mu[reached][noisy[reached]],
                                   atol=2e-3)


def test_loo_ce_over_unconstrained_networks_is_minimized_by_the_denoiser():
    """The documented trap: CE on the LOO output does not learn the LOO posterior."""
    p0 = oracle.toy_law(K, L, seed=3)
    proc = dd.processes.uniform(K)
    orc, table = _minimize_table(proc, "loo", "loo_ce", 0.3, p0)
    mu = np.stack([orc.denoiser(x) for x in orc.xts])
    rho = np.stack([orc.loo(x) for x in orc.xts])
    np.testing.assert_allclose(table, mu, atol=2e-3)
    assert np.abs(table - rho).max() > 0.1


def test_denoiser_parameterized_elbo_learns_the_denoiser():
    """Network read as mu, converted to rho inside the loss: the minimizer is the true denoiser."""
    p0 = oracle.toy_law(K, L, seed=2)
    proc = dd.processes.uniform(K)
    orc, table = _minimize_table(proc, "denoiser", "elbo", 0.5, p0)
    mu = np.stack([orc.denoiser(x) for x in orc.xts])
    np.testing.assert_allclose(table, mu, atol=2e-3)


def test_unknown_loss_names_field():
    proc = dd.processes.uniform(3)
    with pytest.raises(ValueError, match="config.training.loss"):
        losses.loss_per_token(proc, "loo", "mse", jnp.zeros((1, 2, 3)),
                              jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 2), jnp.int32),
                              jnp.ones(1))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "poly"])
def test_masked_nelbo_of_a_time_agnostic_network_is_the_any_order_cross_entropy(schedule):
    """The time-agnostic identity (RADD, Ou et al. 2024; fhs_order_vadd_sedd.md): for
    a network f(x_t) that does not read t and a schedule with alpha_0 = 1, alpha_1 = 0,

        int_0^1 E_{x_t ~ q_t(. | x0)} NELBO_t dt = sum_{n=1}^L (1/n) E_{|S| = n} [ sum_{i in S}
                                                    -log f_i(x0 masked on S)[x0^i] ],

    S uniform among the C(L, n) sets of n masked positions: P(mask set S) = (1 - a)^n a^(L - n)
    and int_0^1 (-alpha') / (1 - alpha) (1 - alpha)^n alpha^(L - n) dt = B(n, L - n + 1) =
    1 / (n C(L, n)). Checked by enumeration of every x0 and mask set, the left side with the
    library's NELBO integrated by quadrature, the right side from the network outputs directly."""
    import itertools

    K3, L3 = 3, 3
    p0 = oracle.toy_law(K3, L3, seed=4).reshape(-1)
    proc = dd.processes.masked(K3, dd.schedules.get(schedule, eps=0.0, power=2.0))
    weights = jax.random.normal(jax.random.key(7), (L3 * (K3 + 1), L3 * K3))

    def model(x_t, t):  # reads x_t only
        flat = jax.nn.one_hot(x_t, K3 + 1).reshape(x_t.shape[0], -1)
        return (2.0 * flat @ weights).reshape(x_t.shape[0], L3, K3)

    x0s = np.array(list(itertools.product(range(K3), repeat=L3)))
    masks = np.array(list(itertools.product([False, True], repeat=L3)))
    X0 = np.repeat(x0s, len(masks), 0)
    M = np.tile(masks, (len(x0s), 1))
    XT = jnp.asarray(np.where(M, K3, X0), jnp.int32)
    P = np.repeat(p0, len(masks))
    n_masked = M.sum(-1)

    nodes, w = np.polynomial.legendre.leggauss(64)
    u = 0.5 * (nodes + 1)
    ts, ws = (1 - np.cos(np.pi * u)) / 2, 0.5 * w * (np.pi / 2) * np.sin(np.pi * u)
    lhs = 0.0
    for t, wt in zip(ts, ws, strict=True):
        a = float(proc.alpha(t))
        q = (1 - a) ** n_masked * a ** (L3 - n_masked)  # P(mask set | x0) at time t
        tt = jnp.full((len(X0),), t, jnp.float32)
        nelbo = losses.nelbo_per_token(proc, "denoiser", model(XT, tt), jnp.asarray(X0, jnp.int32), XT, tt)
        lhs += wt * float((P * q * np.asarray(nelbo, np.float64).sum(-1)).sum())

    log_f = np.asarray(jax.nn.log_softmax(model(XT, jnp.zeros(len(X0))), -1), np.float64)
    ce = -(np.take_along_axis(log_f, X0[..., None], -1)[..., 0] * M).sum(-1)  # [x0 x mask]
    count = np.array([math.comb(L3, int(n)) for n in n_masked])
    rhs = float(np.sum(np.where(n_masked > 0, P * ce / (np.maximum(n_masked, 1) * count), 0.0)))
    assert abs(lhs - rhs) < 1e-4 * rhs, (lhs, rhs)


def test_bad_shapes_and_dtypes_are_named_at_trace_time():
    """Wrong K, t of shape [N, 1, 1] and float x0 used to give three different NELBOs, a
    broadcast [4, 1, 4, 8] loss and a take_along_axis error: each is now one line naming the
    argument and the expected shape, raised while tracing (inside jit too)."""
    proc = dd.processes.masked(5)
    x0 = jnp.zeros((4, 8), jnp.int32)
    t = jnp.full((4,), 0.5)
    loss = jax.jit(lambda logits, x0, x_t, t: losses.loss_per_token(proc, "denoiser", "elbo", logits, x0,
                                                                     x_t, t))
    for k in (6, 12):
        with pytest.raises(ValueError, match=rf"loss_per_token: logits have shape \[4, 8, {k}\]; expected "
                                             r"\[B, L, K\] = \[4, 8, 5\] .*num_classes = 5"):
            loss(jnp.zeros((4, 8, k)), x0, x0, t)
    with pytest.raises(ValueError, match=r"t has shape \[4, 1, 1\]; expected \[\] .* \[4\] .* \[4, 8\]"):
        loss(jnp.zeros((4, 8, 5)), x0, x0, jnp.full((4, 1, 1), 0.5))
    with pytest.raises(TypeError, match=r"x0 must hold integer token ids .*float32"):
        loss(jnp.zeros((4, 8, 5)), x0.astype(jnp.float32), x0, t)
    with pytest.raises(ValueError, match=r"x_t has shape \[4, 7\]; expected x0's shape"):
        loss(jnp.zeros((4, 8, 5)), x0, x0[:, :7], t)
    with pytest.raises(ValueError, match=r"score_entropy: logits have shape \[4, 8, 5\].*\[4, 8, 6\]"):
        losses.score_entropy(proc, jnp.zeros((4, 8, 5)), x0, x0, t)  # log-ratios over the V = K + 1 states
    assert loss(jnp.zeros((4, 8, 5)), x0, x0, t[:, None]).shape == (4, 8)  # [B, 1] broadcasts


def test_a_plain_dict_config_samples():
    """dd.sample with a dict of sections (was "'dict' object has no attribute 'process'")."""
    config = {"process": {"name": "masked", "schedule": "linear", "num_classes": 5},
              "model": {"parameterization": "denoiser"}, "sampler": {"name": "ancestral", "num_steps": 2}}
    tokens = dd.sample(jax.random.PRNGKey(0), lambda x, t: jnp.zeros((*x.shape, 5)), config, 2, 3)
    assert tokens.shape == (2, 3)
    with pytest.raises(TypeError, match="config must be an ml_collections.ConfigDict"):
        dd.sample(jax.random.PRNGKey(0), lambda x, t: jnp.zeros((*x.shape, 5)), [config], 2, 3)
