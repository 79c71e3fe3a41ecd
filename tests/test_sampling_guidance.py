"""Guidance on an exact class-conditional toy: a joint law p(y, x) over labels y in {0, 1} and K^L
sequences, exact conditional models p(x_0^i | x_t, y) from the oracle (null label: p(x)), and
the exact noisy classifier p(y | x_t) by enumeration."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion.sampling import guidance
from discrete_diffusion.testing import oracle

K, L, N = 3, 2, 20_000
P_Y = np.array([0.4, 0.6])
P_X_GIVEN_Y = np.stack([oracle.toy_law(K, L, seed=3), oracle.toy_law(K, L, seed=4)])  # [2, K, K]
P_X = np.tensordot(P_Y, P_X_GIVEN_Y, axes=1)
LABEL, NULL = 0, 2
FLOOR = oracle.expected_tv_floor(P_X_GIVEN_Y[LABEL].reshape(-1), N)
BOUND = oracle.tv_bound(P_X_GIVEN_Y[LABEL].reshape(-1), N)  # an exact sampler's TV stays below (5 SD)
# Samples for the tests that assert TV(law, p(x|y)) < c * TV(p(x), p(x|y)) (c = 0.2, or 0.6 for
# Taylor; TV(p(x), p(x|y)) = 0.31): the bound c * 0.31 >= 0.06 sets what they can detect, so
# 2,500 samples suffice (an exact sampler's TV floor 0.019, its 5-SD bound 0.049 < 0.06).
N_VS_UNGUIDED = 2_500


def _config(process, name="ancestral", steps=100, parameterization="denoiser", **sampler):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": K},
        "model": {"parameterization": parameterization, "num_labels": 2},
        "sampler": {"name": name, "num_steps": steps, **sampler},
    })


def _conditional_model(proc, parameterization="denoiser"):
    """model_fn(x_t, t, label): the exact p(x_0^i | x_t, y) (label 2 = null: p(x_0^i | x_t));
    `test_toy_conditional_model_is_the_oracle_per_label` checks it against `oracle.exact_model_fn`."""
    return oracle.exact_conditional_model_fn(np.stack([*P_X_GIVEN_Y, P_X]), proc, parameterization)


@pytest.mark.parametrize("process,parameterization", [("masked", "denoiser"), ("uniform", "loo")])
def test_toy_conditional_model_is_the_oracle_per_label(process, parameterization):
    proc = dd.processes.from_config(_config(process).process)
    x_t = jax.random.randint(jax.random.key(0), (32, L), 0, proc.num_states)
    t = jax.random.uniform(jax.random.key(1), (32,))
    model = _conditional_model(proc, parameterization)
    for label, law in enumerate([*P_X_GIVEN_Y, P_X]):
        expected = oracle.exact_model_fn(law, proc, parameterization)(x_t, t)
        got = model(x_t, t, jnp.full((32,), label))
        np.testing.assert_allclose(jnp.exp(got), jnp.exp(expected), atol=1e-5)


def _exact_classifier(proc):
    """log p(y | x_t, t) by enumeration; x_onehot float [B, L, V] (differentiable), t [B]."""
    return oracle.exact_classifier_fn(P_Y, P_X_GIVEN_Y, proc)


def _law(result):
    tokens = np.asarray(result.tokens)
    assert tokens.min() >= 0 and tokens.max() < K
    return oracle.empirical_law(tokens, K)


def _tilted(w):
    law = P_X_GIVEN_Y[LABEL].reshape(-1) ** w * P_X.reshape(-1) ** (1 - w)
    return law / law.sum()


@pytest.mark.parametrize("form", guidance.CFG_FORMS)
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_cfg_at_weight_one_samples_the_conditional_law(process, form):
    config = _config(process, cfg_form=form)
    proc = dd.processes.from_config(config.process)
    result = guidance.guided_generate(jax.random.key(0), _conditional_model(proc), config, N, L,
                                      label=LABEL, weight=1.0)
    tv = oracle.total_variation(_law(result), P_X_GIVEN_Y[LABEL].reshape(-1))
    print(f"\n{process}: CFG ({form}) w=1 TV to p(x|y) {tv:.4f}, floor {FLOOR:.4f}")
    assert tv < BOUND and result.nfe == 100


@pytest.mark.parametrize("w", [2.0, 0.5])
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_cfg_moves_towards_the_tilted_law(process, w):
    """The guided law is only approximately p(x|y)^w p(x)^(1-w): print the TVs, assert direction."""
    n = 10_000
    proc = dd.processes.from_config(_config(process).process)
    target = P_X_GIVEN_Y[LABEL].reshape(-1)
    config = _config(process, guidance="cfg", guidance_weight=w)
    law = _law(guidance.guided_generate(jax.random.key(1), _conditional_model(proc), config, n, L,
                                        label=LABEL))
    tv_tilted, tv_target = oracle.total_variation(law, _tilted(w)), oracle.total_variation(law, target)
    tv_uncond = oracle.total_variation(law, P_X.reshape(-1))
    print(f"\n{process}: CFG w={w}: TV to tilted law {tv_tilted:.4f}, TV to p(x|y) {tv_target:.4f}, "
          f"TV to p(x) {tv_uncond:.4f}, TV(tilted, p(x|y)) {oracle.total_variation(_tilted(w), target):.4f}, "
          f"floor {oracle.expected_tv_floor(_tilted(w), n):.4f}")
    # nearer the tilted law than either end (w = 0.5: 0.03 against 0.10-0.13 and 0.18-0.21);
    # sampling p(x) or p(x|y) instead (guidance ignored, or w taken as 1) fails it
    assert tv_tilted < min(tv_target, tv_uncond)


@pytest.mark.parametrize("mode", ["exact", "taylor"])
def test_classifier_guidance_samples_the_conditional_law(mode):
    n = N_VS_UNGUIDED
    config = _config("masked", guidance="classifier", guidance_weight=1.0, classifier_mode=mode)
    proc = dd.processes.from_config(config.process)
    target = P_X_GIVEN_Y[LABEL].reshape(-1)
    result = guidance.guided_generate(jax.random.key(2), _conditional_model(proc), config, n, L,
                                      label=LABEL, classifier_fn=_exact_classifier(proc))
    tv = oracle.total_variation(_law(result), target)
    # Unguided, the exact unconditional model samples p(x) (to its own noise floor).
    tv_unguided = oracle.total_variation(P_X.reshape(-1), target)
    print(f"\nclassifier guidance ({mode}) w=1: TV to p(x|y) {tv:.4f} (unguided {tv_unguided:.4f}, "
          f"floor {oracle.expected_tv_floor(target, n):.4f})")
    assert tv < (0.2 if mode == "exact" else 0.6) * tv_unguided  # Taylor: first order only


def test_cfg_mix_endpoints_and_impossible_states():
    cond = jnp.log(jnp.array([0.5, 0.5, 0.0]) + 1e-45)
    uncond = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    np.testing.assert_allclose(jnp.exp(guidance.cfg_mix(cond, uncond, 1.0)), [0.5, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(jnp.exp(guidance.cfg_mix(uncond, cond, 0.0)), [0.5, 0.5, 0.0], atol=1e-6)
    impossible = jnp.array([0.0, 0.0, dd.processes.NEG_INF])
    for w in (-1.0, 0.5, 3.0):
        assert float(jnp.exp(guidance.cfg_mix(impossible, uncond, w))[2]) == 0.0


@pytest.mark.parametrize("field,value", [("guidance", "cfgg"), ("guidance_weight", float("nan")),
                                         ("guidance_weight", "2"), ("classifier_mode", "hessian"),
                                         ("cfg_form", "logits"), ("classifier_time", "u")])
def test_bad_guidance_fields_name_the_field(field, value):
    config = _config("masked", **{field: value})
    proc = dd.processes.from_config(config.process)
    with pytest.raises(ValueError, match=f"config.sampler.{field}"):
        guidance.guided_generate(jax.random.key(0), _conditional_model(proc), config, 4, L, label=0)


def test_label_for_an_unconditional_model_errors():
    config = _config("masked")
    config.model.num_labels = 0
    model = oracle.exact_model_fn(P_X, dd.processes.from_config(config.process))
    with pytest.raises(ValueError, match="config.model.num_labels"):
        guidance.guided_generate(jax.random.key(0), model, config, 4, L, label=1, weight=2.0)
    with pytest.raises(ValueError, match="out of range"):
        guidance.guided_generate(jax.random.key(0), _conditional_model(dd.processes.masked(K)),
                                 _config("masked"), 4, L, label=2)
    with pytest.raises(ValueError, match="needs classifier_fn"):
        guidance.guided_generate(jax.random.key(0), model, _config("masked", guidance="classifier"), 4, L,
                                 label=0)


@pytest.mark.parametrize("name", ["psi", "score_tweedie"])
def test_cfg_runs_with_other_samplers(name):
    config = _config("uniform", name=name, steps=20, parameterization="loo")
    proc = dd.processes.from_config(config.process)
    result = guidance.guided_generate(jax.random.key(3), _conditional_model(proc, "loo"), config, 64, L,
                                      label=jnp.zeros(64, jnp.int32), weight=1.5)
    assert result.tokens.shape == (64, L) and result.nfe == 20


# ---- one guided step against its defining formula, for every x_t of the toy -------------------------
T_STEP, S_STEP = 0.6, 0.45


def _every_state(proc):
    return jnp.array(list(itertools.product(range(proc.num_states), repeat=L)), jnp.int32)


def _step(process, name="ancestral", weight=1.0, classifier=False, **sampler):
    """(x_t [M, L], guided kernel [M, L, V]) of one step T_STEP -> S_STEP as `guided_generate` builds it."""
    config = _config(process, name=name, **sampler)
    proc = dd.processes.from_config(config.process)
    x_t = _every_state(proc)
    m = x_t.shape[0]
    cls = _exact_classifier(proc) if classifier else None
    ctx = guidance.guided_context(_conditional_model(proc), config, m, L, label=LABEL, weight=weight,
                                  classifier_fn=cls)
    t, s = jnp.full((m,), T_STEP), jnp.full((m,), S_STEP)

    def kernel(logits):
        return dd.sampling.ancestral.reverse_kernel(proc, ctx.output_parameterization, logits, x_t, t, s)

    return proc, x_t, np.asarray(ctx.step_kernel(kernel, ctx.network(x_t, t), x_t, t, s))


def _exact_kernel(law, proc, x_t):
    """The exact reverse kernel p(x_s^i | x_t) of a toy law (oracle), [L, V]."""
    a_t, a_s = float(proc.alpha(T_STEP)), float(proc.alpha(S_STEP))
    return oracle.exact_reverse_kernel(law, proc.name, a_t, a_s, tuple(int(v) for v in x_t))


def _possible(law, proc, x_t):
    return oracle.Oracle(law, proc.name, float(proc.alpha(T_STEP))).pt[
        oracle.Oracle(law, proc.name, float(proc.alpha(T_STEP))).index[tuple(int(v) for v in x_t)]] > 0


def _geometric(p, q, w):
    """∝ p^w q^(1 - w) over the last axis; zero where a term with nonzero coefficient is zero."""
    impossible = ((p <= 0) & (w != 0)) | ((q <= 0) & (w != 1))
    log = w * np.log(np.where(p > 0, p, 1.0)) + (1 - w) * np.log(np.where(q > 0, q, 1.0))
    log = np.where(impossible, -np.inf, log)
    out = np.exp(log - log.max(-1, keepdims=True))
    return out / out.sum(-1, keepdims=True)


@pytest.mark.parametrize("w", [0.5, 2.0])
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_cfg_posterior_form_is_the_geometric_mix_of_the_exact_kernels(process, w):
    """cfg_form='posterior', equation (2): p_w ∝ p(x_s^i | x_t, y)^w p(x_s^i | x_t)^(1 - w) (Duo)."""
    proc, x_t, got = _step(process, weight=w, cfg_form="posterior")
    for n in range(len(x_t)):
        if not _possible(P_X, proc, x_t[n]):
            continue
        cond = _exact_kernel(P_X_GIVEN_Y[LABEL], proc, x_t[n])
        uncond = _exact_kernel(P_X, proc, x_t[n])
        np.testing.assert_allclose(got[n], _geometric(cond, uncond, w), atol=2e-5)


@pytest.mark.parametrize("w", [0.5, 2.0])
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_cfg_denoiser_form_is_the_bridge_of_the_geometric_mix_of_denoisers(process, w):
    """cfg_form='denoiser', equation (1): the step is the exact bridge at mu_w ∝ mu(.|x_t,y)^w mu(.|x_t)^(1-w)
    (MDLM/UDLM D-CFG); for uniform diffusion its LOO posterior is the geometric mix of the LOO posteriors."""
    proc, x_t, got = _step(process, weight=w, cfg_form="denoiser")
    a_t = float(proc.alpha(T_STEP))
    for n in range(len(x_t)):
        if not _possible(P_X, proc, x_t[n]):
            continue
        xt = tuple(int(v) for v in x_t[n])
        cond, uncond = (oracle.Oracle(law, process, a_t) for law in (P_X_GIVEN_Y[LABEL], P_X))
        mu_w = _geometric(cond.denoiser(xt), uncond.denoiser(xt), w)
        mixture = proc.bridge_mixture(x_t[n][None], jnp.array([T_STEP]), jnp.array([S_STEP]),
                                      jnp.asarray(mu_w[None], jnp.float32))[0]
        np.testing.assert_allclose(got[n], np.asarray(mixture), atol=2e-5)
        if process == "uniform":
            rho_w = _geometric(cond.loo(xt), uncond.loo(xt), w)
            plugin = proc.bridge_plugin(x_t[n][None], jnp.array([T_STEP]), jnp.array([S_STEP]),
                                        jnp.asarray(rho_w[None], jnp.float32))[0]
            np.testing.assert_allclose(got[n], np.asarray(plugin), atol=2e-5)


@pytest.mark.parametrize("w", [0.5, 2.0])
def test_the_two_cfg_forms_differ_in_the_masked_unmasking_rate(w):
    """Masked: the denoiser form keeps the mask probability (1 - alpha_s)/(1 - alpha_t); the posterior
    form tilts it by sum_v mu_y^w mu^(1-w), which is <= 1 for 0 < w < 1 and >= 1 for w > 1 (Hölder):
    masked tokens unmask more slowly, resp. faster."""
    proc, x_t, den = _step("masked", weight=w, cfg_form="denoiser")
    _, _, post = _step("masked", weight=w, cfg_form="posterior")
    keep = (1 - float(proc.alpha(S_STEP))) / (1 - float(proc.alpha(T_STEP)))
    masked = np.asarray(x_t == K)
    np.testing.assert_allclose(den[..., K][masked], keep, atol=1e-5)
    stay = post[..., K][masked]
    if w < 1:
        assert np.all(stay >= keep - 1e-6) and np.max(stay) > keep + 1e-2
    else:
        assert np.all(stay <= keep + 1e-6) and np.min(stay) < keep - 1e-2


@pytest.mark.parametrize("time", guidance.CLASSIFIER_TIMES)
@pytest.mark.parametrize("process", ["masked", "uniform"])
def test_classifier_guided_step_is_equation_3(process, time):
    """p(x_s^i = v) ∝ p(x_s^i = v | x_t) p(y | x_t with x^i <- v, t)^w, the classifier at t (the papers),
    or at s with classifier_time='s'; exact unconditional kernel and classifier by enumeration."""
    w = 1.5
    proc, x_t, got = _step(process, weight=w, classifier=True, guidance="classifier", classifier_time=time)
    at = T_STEP if time == "t" else S_STEP
    joint = P_Y[:, None] * P_X_GIVEN_Y.reshape(2, -1)  # [2, A]

    def p_label(x):  # p(y = LABEL | x_t = x) at time `at`, by enumeration
        lik = np.stack([oracle.Oracle(law, process, float(proc.alpha(at))).joint[:, oracle.Oracle(
            law, process, float(proc.alpha(at))).index[tuple(x)]].sum() for law in P_X_GIVEN_Y])
        return (P_Y * lik)[LABEL] / (P_Y * lik).sum()

    del joint
    for n in range(len(x_t)):
        if not _possible(P_X, proc, x_t[n]):
            continue
        xt = [int(v) for v in x_t[n]]
        base = _exact_kernel(P_X, proc, xt)
        tilt = np.array([[p_label(xt[:i] + [v] + xt[i + 1:]) ** w for v in range(proc.num_states)]
                         for i in range(L)])
        expected = base * tilt
        np.testing.assert_allclose(got[n], expected / expected.sum(-1, keepdims=True), atol=2e-5)


@pytest.mark.parametrize("process,name", [("uniform", "ancestral"), ("uniform", "psi"),
                                          ("uniform", "score_tweedie"), ("masked", "score_euler")])
def test_classifier_guidance_with_other_samplers(process, name):
    n = N_VS_UNGUIDED
    config = _config(process, name=name, guidance="classifier", guidance_weight=1.0)
    proc = dd.processes.from_config(config.process)
    target = P_X_GIVEN_Y[LABEL].reshape(-1)
    result = guidance.guided_generate(jax.random.key(5), _conditional_model(proc), config, n, L,
                                      label=LABEL, classifier_fn=_exact_classifier(proc))
    tv = oracle.total_variation(_law(result), target)
    tv_unguided = oracle.total_variation(P_X.reshape(-1), target)
    print(f"\n{process} {name}: classifier guidance w=1 TV to p(x|y) {tv:.4f} (unguided {tv_unguided:.4f}, "
          f"floor {oracle.expected_tv_floor(target, n):.4f})")
    assert tv < 0.2 * tv_unguided and result.nfe == 100


def test_kernel_guidance_refuses_greedy_final():
    config = _config("masked", guidance="cfg", cfg_form="posterior", greedy_final=True)
    with pytest.raises(ValueError, match="config.sampler.greedy_final"):
        guidance.guided_generate(jax.random.key(0), _conditional_model(dd.processes.masked(K)), config, 4, L,
                                 label=0)


@pytest.mark.parametrize("name", ["first_hitting"])
def test_kernel_guidance_needs_a_sampler_with_a_step_kernel(name):
    proc = dd.processes.masked(K)
    for sampler in ({"guidance": "classifier"}, {"guidance": "cfg", "cfg_form": "posterior"}):
        config = _config("masked", name=name, **sampler)
        cls = _exact_classifier(proc) if sampler["guidance"] == "classifier" else None
        with pytest.raises(ValueError, match="config.sampler.name='first_hitting'"):
            guidance.guided_generate(jax.random.key(0), _conditional_model(proc), config, 4, L, label=0,
                                     classifier_fn=cls)


def test_classifier_guided_informed_corrector_conditionals_are_those_of_the_tilted_marginal():
    """informed_pc's corrector under classifier guidance resamples from the single-site conditionals of
    g(x) ∝ p_s(x) p(y | x, s)^w (enumeration), so its Gibbs / MH sweeps target the guided marginal."""
    w = 1.5
    config = _config("uniform", name="informed_pc", guidance="classifier")
    proc = dd.processes.from_config(config.process)
    x = _every_state(proc)
    m = x.shape[0]
    ctx = guidance.guided_context(_conditional_model(proc), config, m, L, label=LABEL, weight=w,
                                  classifier_fn=_exact_classifier(proc))
    s = jnp.full((m,), S_STEP)
    conditionals = dd.sampling.informed_pc.single_site_conditionals
    got = np.asarray(ctx.step_kernel(lambda lg: conditionals(proc, ctx.output_parameterization, lg, x, s),
                                     ctx.network(x, s), x, s, s))
    a_s = float(proc.alpha(S_STEP))
    p_s = oracle.Oracle(P_X, "uniform", a_s).pt.reshape([K] * L)
    lik = np.stack([oracle.Oracle(law, "uniform", a_s).pt.reshape([K] * L) for law in P_X_GIVEN_Y])
    p_label = P_Y[LABEL] * lik[LABEL] / np.tensordot(P_Y, lik, axes=1)
    g = p_s * p_label**w
    for n, state in enumerate(np.asarray(x)):
        for i in range(L):
            idx = list(state)
            row = []
            for v in range(K):
                idx[i] = v
                row.append(g[tuple(idx)])
            np.testing.assert_allclose(got[n, i], np.array(row) / sum(row), atol=2e-5)


@pytest.mark.parametrize("extra", [{"site_rule": "random", "sites_per_sweep": 1},
                                   {"mh_correct": True}])
def test_classifier_guidance_with_informed_pc(extra):
    n, steps = N_VS_UNGUIDED, 50
    config = _config("uniform", name="informed_pc", steps=steps, guidance="classifier", corrector_steps=1,
                     **extra)
    proc = dd.processes.from_config(config.process)
    target = P_X_GIVEN_Y[LABEL].reshape(-1)
    result = guidance.guided_generate(jax.random.key(6), _conditional_model(proc), config, n, L,
                                      label=LABEL, classifier_fn=_exact_classifier(proc))
    tv = oracle.total_variation(_law(result), target)
    tv_unguided = oracle.total_variation(P_X.reshape(-1), target)
    print(f"\nuniform informed_pc {extra}: classifier guidance w=1 TV to p(x|y) {tv:.4f} "
          f"(unguided {tv_unguided:.4f}, floor {oracle.expected_tv_floor(target, n):.4f}, NFE {result.nfe})")
    assert tv < 0.2 * tv_unguided


@pytest.mark.parametrize("process,parameterization", [("masked", "denoiser"), ("uniform", "loo")])
@pytest.mark.parametrize("keyword", [False, True])
def test_guided_and_conditional_logits_at_output_positions(process, parameterization, keyword):
    """The samplers' few-position calls (`output_positions`) of the CFG and conditional model_fns
    read the full guided / conditional logits there, whether or not the network takes the keyword."""
    proc = dd.processes.from_config(_config(process).process)
    model = _conditional_model(proc, parameterization)
    if keyword:
        full_model = model

        def model(x_t, t, label, output_positions=None):
            out = full_model(x_t, t, label)
            if output_positions is None:
                return out
            return jnp.take_along_axis(out, output_positions[..., None], axis=1)

    x_t = jax.random.randint(jax.random.key(0), (6, L), 0, proc.num_states)
    t = jax.random.uniform(jax.random.key(1), (6,))
    pos = jax.random.randint(jax.random.key(2), (6, 1), 0, L)
    labels = jnp.array([0, 1, 0, 1, 0, 1])
    for fn in (guidance.cfg_model_fn(model, proc, parameterization, labels, NULL, 1.7),
               guidance.conditional_model_fn(model, labels)):
        full = fn(x_t, t)
        at = fn(x_t, t, output_positions=pos)
        np.testing.assert_allclose(at, jnp.take_along_axis(full, pos[..., None], axis=1), atol=1e-5)
