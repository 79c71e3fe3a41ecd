"""The 'duo_distill' method (discrete_diffusion/methods/duo_distill.py): Duo's discrete consistency
distillation.

Exact checks: the joint law of the shared-noise pair (z_t, z_s) against its enumerated coupling
(K = 3; the marginals q_t of each level are tested in test_duality); the default window gives
back Duo's [-4, -1] at K = 50257; delta doubles per round; the refresh transform moves the teacher
to the student exactly at round boundaries and ignores teacher gradients; the loss has no teacher
gradient, is 0 at delta = 0 with student = teacher, and its expectation equals the enumeration over
the coupled (z_t, z_s) of a tiny network (K = 3, L = 3), which independent z_t, z_s would not give;
errors name config.method.teacher_workdir. The end-to-end run (train through the trainer with a
teacher refresh, checkpoint round trip, --mode=eval and --mode=sample) is the
shakespeare_duo_distill case of tests/test_configs_run.py.
"""

from __future__ import annotations

import itertools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from discrete_diffusion import config_validation, training
from discrete_diffusion.methods import duo_distill
from discrete_diffusion.methods.duo_distill import DuoDistill
from discrete_diffusion.testing import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import synthetic_uniform  # noqa: E402


def distill_config(K=3, L=3, **method):
    config = synthetic_uniform.get_config()
    config.method.name = "duo_distill"
    config.method.teacher_workdir = None
    for k, v in method.items():
        config.method[k] = v
    config.process.num_classes = K
    config.model.parameterization = "loo"
    config.model.num_layers, config.model.d_model, config.model.num_heads = 1, 16, 2
    config.model.cond_dim = 8
    config.model.dropout = 0.0
    config.data.seq_len = L
    config.data.synthetic_vocab_size = K
    return config


def random_networks(config, K, seeds):
    """Networks whose output depends on their input (random final layer, not the zero init)."""
    from discrete_diffusion.methods.diffusion import Diffusion

    @jax.jit
    def init(k):
        net = Diffusion(config, K).init(k, {"tokens": jnp.zeros((1, 3), jnp.int32)})["network"]
        out = net["final"]["out"]
        out["kernel"] = 0.5 * jax.random.normal(jax.random.fold_in(k, 1), out["kernel"].shape)
        return net

    return [init(jax.random.key(seed)) for seed in seeds]


# ------------------------------------------------------------------------- the trajectory pair


def joint_law(K, x0, alpha_t, alpha_s):
    """Exact P(z_t = i, z_s = j) of one token under the shared-noise coupling (module docstring)."""
    P = np.zeros((K, K))
    P[x0, x0] = alpha_t + (1 - alpha_t) / K
    for j in range(K):
        if j != x0:
            P[j, j] = (1 - alpha_s) / K
            P[j, x0] = (alpha_s - alpha_t) / K
    return P


def test_trajectory_pair_has_the_coupled_joint_law():
    K, n = 3, 30_000
    x0 = jnp.array([0, 2, 1], jnp.int32)
    a_t, a_s = 0.55, 0.8
    z_t, z_s = duo_distill.trajectory_pair(jax.random.key(0), jnp.tile(x0, (n, 1)), a_t, a_s, K)
    z_t, z_s = np.asarray(z_t), np.asarray(z_s)
    alpha_t, alpha_s = (float(duo_distill.duality.diffusion_transform(a, K)) for a in (a_t, a_s))
    for pos in range(3):
        P = joint_law(K, int(x0[pos]), alpha_t, alpha_s)
        counts = np.zeros((K, K))
        np.add.at(counts, (z_t[:, pos], z_s[:, pos]), 1)
        assert counts[P == 0].sum() == 0  # no other transitions: at most one change, towards x0
        mask = P > 0
        assert scipy.stats.chisquare(counts[mask], n * P[mask]).pvalue > 1e-3
        # independent levels would change a token with probability 2 P(z != x0) ... far from this
        changed = np.mean(z_t[:, pos] != z_s[:, pos])
        assert abs(changed - (K - 1) / K * (alpha_s - alpha_t)) < 4 * np.sqrt(changed / n)


def test_default_window_and_delta_schedule():
    g_min, g_max = duo_distill.default_distill_gamma_window(50257)
    assert g_min == pytest.approx(-4.0, abs=0.01) and g_max == pytest.approx(-1.0, abs=0.01)
    steps = jnp.arange(0, 12)
    d = np.asarray(duo_distill.delta_at(steps, 1 / 64, 4))
    np.testing.assert_array_equal(d, [1 / 64] * 4 + [2 / 64] * 4 + [4 / 64] * 4)
    t, s = duo_distill.pair_times(jnp.array([0.0, 0.5, 0.99]), jnp.float32(0.25))
    np.testing.assert_allclose(t, [0.25, 0.75, 1.0])
    np.testing.assert_allclose(s, [0.0, 0.5, 0.75])
    t, s = duo_distill.pair_times(jnp.array([0.3]), jnp.float32(2.0))  # delta > 1: s clipped at 0
    assert float(t[0]) == 1.0 and float(s[0]) == 0.0


# ------------------------------------------------------------------------- the refresh transform


def test_teacher_refresh_exactly_at_round_boundaries():
    params = {"network": {"w": jnp.arange(3.0)}, "teacher": {"w": jnp.full((3,), -5.0)}}
    tx = duo_distill.teacher_refresh(optax.sgd(0.1), round_steps=3)
    state = tx.init(params)
    students, teachers = [], []
    for i in range(8):
        grads = {"network": {"w": jnp.full((3,), float(i + 1))},
                 "teacher": {"w": jnp.full((3,), 100.0)}}  # must be ignored
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        students.append(np.asarray(params["network"]["w"]))
        teachers.append(np.asarray(params["teacher"]["w"]))
    # step k (1-based count) ends round k // 3: the teacher is the student of steps 3 and 6
    for k in range(1, 9):
        want = np.full(3, -5.0) if k < 3 else students[(k // 3) * 3 - 1]
        np.testing.assert_allclose(teachers[k - 1], want, rtol=1e-7, atol=1e-7)
    # the student is plain SGD on its own gradients
    np.testing.assert_allclose(students[-1], np.arange(3.0) - 0.1 * sum(range(1, 9)), rtol=1e-6)
    assert int(state.count) == 8
    with pytest.raises(ValueError, match="round_steps"):
        duo_distill.teacher_refresh(optax.sgd(0.1), round_steps=0)


# ------------------------------------------------------------------------- the loss


def built(K=3, L=3, student_seed=0, teacher_seed=0, **method):
    config = distill_config(K, L, **method)
    student, teacher = random_networks(config, K, (student_seed, teacher_seed))
    m = DuoDistill(config, K, teacher_network=teacher)
    params = m.init(jax.random.key(0), {"tokens": jnp.zeros((1, L), jnp.int32)})
    return m, {**params, "network": student}


def fixed_batch(x0, n, u, key=1):
    return {"tokens": jnp.tile(jnp.asarray(x0, jnp.int32)[None], (n, 1)),
            "dcd_u": jnp.full((n,), u, jnp.float32), "dcd_key": jax.random.split(jax.random.key(key), n)}


def expected_kl(kl, seqs, joints):
    """Enumerated E[mean_l KL_l] over (z_t, z_s) ~ prod_l joints[l]; kl [i (z_t), j (z_s), L] over
    all pairs of sequences seqs [K^L, L]."""
    w = np.ones((len(seqs), len(seqs)))
    for pos in range(seqs.shape[1]):
        w *= joints[pos][seqs[:, pos][:, None], seqs[:, pos][None, :]]
    return float(np.sum(w * np.asarray(kl).mean(-1)))


def test_loss_gradient_zero_limit_and_expectation_by_enumeration():
    K, L, n, u = 3, 3, 4000, 0.3
    x0 = [0, 2, 1]
    m, params = built(K, L, student_seed=5, teacher_seed=7)

    @jax.jit
    def loss_and_grads(params, delta):  # one compile for every check below
        def f(p):
            kl, pair = m.kl_per_token(p, fixed_batch(x0, n, u), jax.random.key(0), train=True, delta=delta)
            return jnp.mean(kl), (kl, pair)
        return jax.value_and_grad(f, has_aux=True)(params)

    (_, (kl, p)), grads = loss_and_grads(params, jnp.float32(0.4))
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["teacher"]))
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["network"])) > 0
    # E[loss] at fixed (t, s) = the enumeration over the coupled pair (and not over independent ones)
    per_row = np.asarray(kl).mean(-1)
    mc, se = per_row.mean(), per_row.std() / np.sqrt(n)
    alpha_t, alpha_s = float(p["alpha_t"][0]), float(p["alpha_s"][0])
    assert float(p["t"][0]) == pytest.approx(0.7) and float(p["s"][0]) == pytest.approx(0.3)
    seqs = np.array(list(itertools.product(range(K), repeat=L)), np.int32)  # [K^L, L]

    @jax.jit
    def all_pairs_kl(params, t_net, s_net):  # KL(student(z_t) || teacher(z_s)) [K^L, K^L, L]
        lt = m.network(params, jnp.asarray(seqs), jnp.full((len(seqs),), t_net))
        ls = m.network({"network": params["teacher"]}, jnp.asarray(seqs), jnp.full((len(seqs),), s_net))
        return duo_distill.categorical_kl(lt[:, None], ls[None, :])

    kl_all = all_pairs_kl(params, p["t_net"][0], p["s_net"][0])
    coupled = [joint_law(K, x, alpha_t, alpha_s) for x in x0]
    exact = expected_kl(kl_all, seqs, coupled)
    assert abs(mc - exact) < 4 * se, (mc, exact, se)
    indep = [np.outer(c.sum(1), c.sum(0)) for c in coupled]  # same marginals, independent noise
    assert abs(expected_kl(kl_all, seqs, indep) - exact) > 8 * se
    # student = teacher: positive for delta > 0, 0 as delta -> 0 (same (z, t) for both). The two
    # network calls are separate XLA computations that may fuse and reorder differently, so "0" is
    # 0 up to float32 rounding: |KL| <= a few ulps (eps = 1.2e-7) of the per-token log-probabilities.
    same = {"network": params["teacher"], "teacher": params["teacher"]}
    positive = float(loss_and_grads(same, jnp.float32(0.4))[0][0])
    at_zero = float(loss_and_grads(same, jnp.float32(0.0))[0][0])
    rounding = 16 * float(jnp.finfo(jnp.float32).eps) * max(1.0, np.log(K))  # log K: the log-probs' scale
    assert positive > 1e-4 and positive > 100 * rounding
    assert abs(at_zero) <= rounding, (at_zero, rounding)


# ------------------------------------------------------------------------- the teacher workdir


def tiny(config):
    c = config
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.cond_dim = 1, 16, 2, 8
    c.data.seq_len = 8
    c.data.num_train_sequences, c.data.num_eval_sequences, c.data.eval_batch_size = 64, 8, 8
    c.data.num_threads, c.data.prefetch = 1, 2
    c.training.batch_size, c.training.log_every, c.training.eval_every = 4, 1, 0
    c.training.sample_every, c.training.eval_batches, c.training.eval_num_t = 0, 1, 2
    c.training.warmup_steps = 0
    c.sampler.num_steps = 2
    c.eval.frontier = False
    return c


@pytest.fixture(scope="module")
def teacher_workdir(tmp_path_factory):
    """An untrained Duo run (its files only: config.json and a step-0 checkpoint)."""
    config = tiny(synthetic_uniform.get_config())
    config.method.name = "duo"
    config.model.parameterization = "loo"
    return runs.initial_checkpoint(config, str(tmp_path_factory.mktemp("teacher")))


def student_config(teacher_wd, num_steps):
    config = tiny(synthetic_uniform.get_config())
    config.method.name = "duo_distill"
    config.method.teacher_workdir = teacher_wd
    config.method.round_steps = 1
    config.method.delta_init = 0.125
    config.model.parameterization = "loo"
    config.training.num_steps = num_steps
    config.training.checkpoint_every = num_steps
    config.training.ema_decay = 0.5
    config.process.num_classes = 32  # synthetic_uniform's vocabulary
    return config


def test_teacher_from_workdir_and_errors(teacher_workdir, tmp_path):
    K = 32  # synthetic_uniform's vocabulary
    m = DuoDistill(student_config(teacher_workdir, 1), K)
    params = m.init(jax.random.key(0), {"tokens": jnp.zeros((1, 8), jnp.int32)})
    _, _, _, state = training.load_state(training.load_config(teacher_workdir), teacher_workdir)
    for key in ("network", "teacher"):  # both start from the run's EMA network
        jax.tree.map(np.testing.assert_array_equal, params[key], state.ema_params["network"])
    config = student_config(None, 1)
    with pytest.raises(ValueError, match=r"config\.method\.teacher_workdir=None must be"):
        DuoDistill(config, K)
    config.method.teacher_workdir = str(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"config\.method\.teacher_workdir=.*missing.* is unreadable"):
        DuoDistill(config, K)
    config = student_config(teacher_workdir, 1)
    config.model.d_model = 32
    with pytest.raises(ValueError, match=r"teacher_workdir=.*does not have the architecture"):
        DuoDistill(config, K)
    teacher_config = student_config(teacher_workdir, 1)
    teacher_config.model.parameterization = "denoiser"
    with pytest.raises(ValueError, match=r"parameterization='denoiser' differs"):
        m._check_teacher_config(teacher_config, "wd")
    for field, value, msg in [("round_steps", 0, "round_steps=0 must be"),
                              ("teacher_params", "raw", "teacher_params='raw' is not one of"),
                              ("delta_init", 0.0, "delta_init=0.0 must be"),
                              ("tau", 0.1, "config.method.tau is not a field")]:
        config = student_config(teacher_workdir, 1)
        config.method[field] = value
        with pytest.raises(ValueError, match=msg):
            config_validation.validate(config)
