"""The 'duo' method (discrete_diffusion/methods/duo.py): Duo's Gaussian-relaxed curriculum.

Exact checks: the chain-rule alpha'_t against finite differences of T(a_t); as tau -> 0 the
relaxed loss equals `losses.uniform_nelbo_rb` at z_t sample by sample (dense and top-k input);
with a fixed network the tau = 0 loss is an unbiased estimate of the NELBO integrand's
expectation under the uniform marginal at alpha = T(a_t) (enumeration over z_t, K = 3); outside
the curriculum the loss is the 'diffusion' method's exactly; micro-batches give the whole batch's
loss. Then the method trains through the trainer (loss decreases) and samples with a uniform
sampler; config fields are validated with errors naming them.
"""

from __future__ import annotations

import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion import duality, losses, methods, training
from discrete_diffusion.methods.duo import Duo, GaussianDualSchedule, default_gamma_window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import synthetic_uniform  # noqa: E402

K, L, B = 6, 8, 4


def duo_config(**method):
    config = synthetic_uniform.get_config()
    config.method.name = "duo"
    for k, v in method.items():
        config.method[k] = v
    config.process.num_classes = K
    config.model.parameterization = "loo"
    config.model.num_layers, config.model.d_model, config.model.num_heads = 1, 32, 2
    config.model.cond_dim = 16
    config.data.seq_len = L
    config.data.synthetic_vocab_size = K
    return config


def built(**method):
    config = duo_config(**method)
    m = methods.get(config, K)
    params = m.init(jax.random.key(0), {"tokens": jnp.zeros((1, L), jnp.int32)})
    # random (non-zero-init) final layer so the logits depend on the input
    params = jax.tree.map(lambda p: p, params)
    out = params["network"]["final"]["out"]
    out["kernel"] = 0.3 * jax.random.normal(jax.random.key(1), out["kernel"].shape)
    return m, params


def data(seed=0, b=B, length=L):
    return jax.random.randint(jax.random.key(seed), (b, length), 0, K, dtype=jnp.int32)


def test_schedule_chain_rule_and_window():
    sched = GaussianDualSchedule(K, *default_gamma_window(K))
    t = jnp.linspace(0.02, 0.98, 25)
    np.testing.assert_allclose(sched.alpha(t), duality.diffusion_transform(sched.alpha_gauss(t), K),
                               atol=1e-7)
    h = 1e-3
    fd = (sched.alpha(t + h) - sched.alpha(t - h)) / (2 * h)
    np.testing.assert_allclose(sched.dalpha(t), fd, rtol=2e-3, atol=2e-4)
    # a'_t itself against the finite difference of a_t
    fd_a = (sched.alpha_gauss(t + h) - sched.alpha_gauss(t - h)) / (2 * h)
    np.testing.assert_allclose(sched.dalpha_gauss(t), fd_a, rtol=1e-3, atol=1e-5)
    assert np.all(np.asarray(sched.dalpha(t)) < 0)
    # the default window spans alpha in [0.05, 0.95]; inverse undoes alpha
    np.testing.assert_allclose(sched.alpha(jnp.array([0.0, 1.0])), [0.95, 0.05], atol=1e-4)
    np.testing.assert_allclose(sched.inverse(sched.alpha(t)), t, atol=1e-4)
    # Duo's OWT gammas put alpha in about [0.05, 0.95] at K = 50257 (its stated intent)
    owt = GaussianDualSchedule(50257, -3.55, -1.85)
    np.testing.assert_allclose(owt.alpha(jnp.array([0.0, 1.0])), [0.945, 0.049], atol=2e-3)
    g_min, g_max = default_gamma_window(50257)
    assert abs(g_min + 3.55) < 0.03 and abs(g_max + 1.85) < 0.03


@pytest.mark.parametrize("top_k", [None, 2])
def test_tau_to_zero_equals_uniform_nelbo_rb_sample_by_sample(top_k):
    m, params = built(top_k=top_k)
    x0 = data(1)
    key = jax.random.key(2)
    batch = m.prepare({"tokens": x0}, key)

    def reference(z_t, t_net):
        logits = m.network(params, z_t, t_net)  # the id path at z_t
        return losses.uniform_nelbo_rb(m.dual_proc, logits, x0, z_t, batch["duo_t"][:, None])

    hard = m.relaxed(params, batch, key, train=False, tau=0.0)
    ref = reference(hard["z_t"], hard["t_net"])
    assert np.all(np.isfinite(ref)) and np.all(np.asarray(ref) >= -1e-5)
    np.testing.assert_allclose(hard["loss"], ref, rtol=1e-5, atol=1e-6)
    # the network's time is the plain process's time with alpha = T(a_t)
    np.testing.assert_allclose(m.proc.alpha(hard["t_net"]), hard["alpha"], atol=1e-5)
    errors = []
    for tau in (1.0, 1e-1, 1e-2, 1e-5):
        soft = m.relaxed(params, batch, key, train=False, tau=tau)
        np.testing.assert_array_equal(soft["z_t"], hard["z_t"])  # z_t does not depend on tau
        errors.append(float(jnp.max(jnp.abs(soft["loss"] - ref))))
    assert errors[0] > 1e-2  # the soft input matters at tau = 1
    assert errors[-1] < 1e-5, errors  # and not at tau -> 0
    assert errors[0] >= errors[1] >= errors[2] >= errors[3], errors


def test_tau_zero_loss_is_unbiased_for_the_uniform_nelbo_at_t_of_a():
    """Fixed network output (kernel 0, random bias): E over the Gaussian latent of the tau = 0 loss
    = sum_z q_alpha(z | x0) f(z), alpha = T(a_t), by enumeration over z (K = 3)."""
    k3 = 3
    config = duo_config()
    config.process.num_classes = k3
    m = Duo(config, k3)
    params = m.init(jax.random.key(0), {"tokens": jnp.zeros((1, 64), jnp.int32)})
    out = params["network"]["final"]["out"]
    out["kernel"] = jnp.zeros_like(out["kernel"])
    bias = jnp.array([0.7, -0.4, 0.1])
    out["bias"] = bias
    n_rows, length = 32, 256
    x0 = jax.random.randint(jax.random.key(3), (n_rows, length), 0, k3, dtype=jnp.int32)
    batch = m.prepare({"tokens": x0}, jax.random.key(4))
    got = m.relaxed(params, batch, jax.random.key(5), train=False, tau=0.0)["loss"]  # [R, Lx]
    t = batch["duo_t"][:, None, None]  # [R, 1, 1]
    logits = jnp.broadcast_to(bias, (n_rows, length, k3))
    f = jnp.stack([losses.uniform_nelbo_rb(m.dual_proc, logits, x0, jnp.full_like(x0, z), t[..., 0])
                   for z in range(k3)], -1)  # f(z) [R, Lx, K]
    q = m.dual_proc.marginal_probs(x0, t[..., 0])  # [R, Lx, K], alpha = T(a_t)
    mean = jnp.sum(q * f, -1)
    var = jnp.sum(q * f * f, -1) - mean**2
    diff = float(jnp.sum(got) - jnp.sum(mean))
    se = math.sqrt(float(jnp.sum(var)))
    assert abs(diff) < 4 * se, (diff, se)
    # power: had z_t the law of alpha +- 0.1 instead of T(a_t), the mean would be > 6 se away
    for shift in (-0.1, 0.1):
        alpha = jnp.clip(m.dual_proc.alpha(t[..., 0]) + shift, 0.0, 1.0)
        q_wrong = m.dual_proc.marginal_from_probs(jax.nn.one_hot(x0, k3), alpha)
        assert abs(float(jnp.sum(q_wrong * f) - jnp.sum(mean))) > 6 * se, shift


def test_outside_the_curriculum_it_is_the_diffusion_method():
    m, params = built(curriculum_steps=5)
    config = duo_config()
    config.method.name = "diffusion"
    plain = methods.get(config, K)
    x0 = data(2)
    key = jax.random.key(7)
    ref, ref_aux = plain.loss(params, {"tokens": x0}, key, train=True, step=jnp.int32(0))
    after, aux = m.loss(params, {"tokens": x0}, key, train=True, step=jnp.int32(5))
    np.testing.assert_allclose(after, ref, rtol=1e-6)
    np.testing.assert_allclose(aux["nelbo"], ref_aux["nelbo"], rtol=1e-6)
    assert float(aux["metrics"]["curriculum"]) == 0.0
    during, aux = m.loss(params, {"tokens": x0}, key, train=True, step=jnp.int32(4))
    assert float(aux["metrics"]["curriculum"]) == 1.0 and abs(float(during - ref)) > 1e-4
    # curriculum_steps = 0: the 'diffusion' method at every step; evaluation is the discrete NELBO
    off, _ = built(curriculum_steps=0)
    np.testing.assert_allclose(off.loss(params, {"tokens": x0}, key, step=jnp.int32(0))[0], ref,
                               rtol=1e-6)
    e1 = m.nelbo_samples(params, {"tokens": x0}, key, 2)
    e2 = plain.nelbo_samples(params, {"tokens": x0}, key, 2)
    np.testing.assert_allclose(e1, e2, rtol=1e-6)


def test_micro_batches_see_the_noise_of_the_whole_batch():
    """Gradient accumulation changes nothing: the prepared batch carries per-row curriculum noise
    (top-k input here; dropout 0), so the mean of the halves' losses is the whole batch's."""
    m, params = built(top_k=3)
    x0 = data(4)
    batch = m.prepare({"tokens": x0}, jax.random.key(8))
    loss = jax.jit(lambda b, k: m.loss(params, b, k, step=jnp.int32(0))[0])
    full = loss(batch, jax.random.key(9))
    halves = [loss(jax.tree.map(lambda v, s=s: v[s], batch), jax.random.key(10 + i))
              for i, s in enumerate((slice(0, 2), slice(2, 4)))]
    np.testing.assert_allclose(full, np.mean(halves), rtol=1e-5)


def test_tau_annealing_is_log_linear():
    m, _ = built(curriculum_steps=100, tau=1e-1, tau_end=1e-3)
    np.testing.assert_allclose([m.tau_at(s) for s in (0, 50, 100, 200)], [1e-1, 1e-2, 1e-3, 1e-3],
                               rtol=1e-5)
    const, _ = built()
    assert float(const.tau_at(7)) == pytest.approx(1e-3)
    assert const.curriculum_steps == duo_config().training.num_steps // 2


@pytest.mark.parametrize("field, value, message", [
    ("top_k", 0, r"config.method.top_k=0 must be None \(dense\) or an int in \[1, num_classes - 1 = 5\]"),
    ("top_k", K, "config.method.top_k=6 must be"),
    ("tau", -1.0, "config.method.tau=-1.0 must be a number >= 0"),
    ("tau_end", 0.0, "config.method.tau_end=0.0 must be None or a number > 0"),
    ("curriculum_steps", -1, "config.method.curriculum_steps=-1 must be None or an int >= 0"),
    ("gamma_min", -1.0, "config.method.gamma_min=-1.0 and config.method.gamma_max=None"),
    ("temperature", 1.0, r"config.method.temperature is not a field .*allowed: \['name'"),
])
def test_method_fields_are_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        Duo(duo_config(**{field: value}), K)


def test_process_and_loss_are_validated():
    config = duo_config()
    config.process.name = "masked"
    with pytest.raises(ValueError, match=r"config.process.name='masked' is not one of \['uniform'\]"):
        Duo(config, K)
    config = duo_config(gamma_min=-1.0, gamma_max=-2.0)
    with pytest.raises(ValueError, match="config.method.gamma_min=-1.0 must be < config.method.gamma_max"):
        Duo(config, K)
    config = duo_config()
    config.training.loss = "denoising_ce"
    with pytest.raises(ValueError, match="config.training.loss='denoising_ce' is not one of"):
        Duo(config, K)


def test_trains_through_the_trainer_and_samples(tmp_path):
    config = duo_config(curriculum_steps=60, top_k=2)
    c = config.training
    c.num_steps, c.batch_size, c.learning_rate, c.warmup_steps = 80, 16, 3e-3, 0
    c.log_every, c.eval_every, c.eval_batches, c.eval_num_t = 20, 80, 1, 2
    c.sample_every, c.num_samples, c.checkpoint_every, c.ema_decay = 80, 2, 80, 0.0
    c.grad_accum_steps = 2
    config.data.num_train_sequences, config.data.num_eval_sequences = 512, 16
    config.data.num_threads, config.data.eval_batch_size = 1, 8
    config.sampler.num_steps = 4
    config.eval.frontier = False
    state = training.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["curriculum"] for r in train] == [1.0, 1.0, 1.0, 0.0]
    assert train[2]["loss"] < train[0]["loss"]  # the curriculum objective decreases
    ev = [r for r in rows if r["kind"] == "eval"][-1]
    assert np.isfinite(ev["eval_bpt"]) and ev["eval_nelbo"] < math.log(K) * 1.2
    m = methods.get(config, K)
    res = m.generate(state.params, jax.random.key(0), 3, L)
    assert res.tokens.shape == (3, L) and int(res.tokens.min()) >= 0 and int(res.tokens.max()) < K
