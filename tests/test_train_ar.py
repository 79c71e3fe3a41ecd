"""The autoregressive baseline in the training system: its NLL is the exact chain-rule likelihood,
it learns, and it samples through `Trainer.generate`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from test_train import tiny_config

from discrete_diffusion import training


def ar_config(num_steps: int = 20):
    config = tiny_config(num_steps=num_steps)
    config.model.name = "ar"
    config.model.time_conditioning = False
    return config


def test_ar_nll_is_the_chain_rule_likelihood():
    """Per-token NLL from the method's loss == -log p(x^i | x^{<i}) computed by feeding each prefix
    alone (later positions replaced by random junk, which a causal model must ignore)."""
    config, data, trainer = training.setup(ar_config())
    state = trainer.init_state(0)
    x0 = jnp.asarray(next(data.train_iter)["tokens"][:2])
    _, aux = trainer.method.loss(state.params, {"tokens": x0}, jax.random.key(1), train=False)
    nll = aux["nelbo"]
    K, L = trainer.method.bos_id, x0.shape[1]
    junk = jax.random.randint(jax.random.key(2), x0.shape, 0, K)
    expected = np.zeros(x0.shape)
    for i in range(L):
        prefix = jnp.where(jnp.arange(L) < i, x0, junk)
        inputs = jnp.concatenate([jnp.full((2, 1), K), prefix[:, :-1]], axis=1)
        logp = jax.nn.log_softmax(trainer.method.next_token_logits(state.params, inputs))[:, i]
        expected[:, i] = -np.asarray(jnp.take_along_axis(logp, x0[:, i:i + 1], axis=-1))[:, 0]
    np.testing.assert_allclose(np.asarray(nll), expected, rtol=1e-5, atol=1e-5)


def test_ar_learns_towards_the_entropy_rate_and_samples():
    config = ar_config(num_steps=150)
    state = training.train_and_evaluate(config, None)
    config, data, trainer = training.setup(config)
    ev = trainer.evaluate(state.ema_params, data.eval_batches(2))
    floor = float(data.info["sequence_entropy"]) / int(data.seq_len)
    uniform = float(np.log(trainer.method.bos_id))
    assert floor <= ev["eval_nelbo"] + 0.02 and ev["eval_nelbo"] < floor + 0.5 * (uniform - floor)
    res = trainer.generate(state.ema_params, jax.random.key(0), 3, int(data.seq_len))
    tokens = np.asarray(res.tokens)
    assert tokens.shape == (3, data.seq_len) and tokens.min() >= 0 and tokens.max() < trainer.method.bos_id
    assert res.nfe == data.seq_len


def test_padded_last_eval_batch_counts_every_sequence_once():
    """64 held-out sequences in batches of 24 (the last one padded with 8 invalid rows) give the
    same exact AR likelihood as batches of 16; every sequence is counted once."""
    results = []
    for eval_batch in (24, 16):
        config = ar_config()
        config.data.eval_batch_size = eval_batch
        config, data, trainer = training.setup(config)
        params = trainer.init_state(0).params  # perturbed: the zero-initialized head is uniform
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(5), len(leaves))
        params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                           for k, x in zip(keys, leaves, strict=True)])
        results.append(trainer.evaluate(params, data.eval_batches(100)))
    a, b = results
    assert a["eval_sequences"] == b["eval_sequences"] == 64
    assert a["eval_tokens"] == b["eval_tokens"] == 64 * 16
    np.testing.assert_allclose(a["eval_nelbo"], b["eval_nelbo"], rtol=1e-6)
    assert a["eval_num_t"] == 1 and a["eval_se_bpt"] > 0


def test_diffusion_eval_reports_standard_errors_that_shrink_with_more_times():
    config = tiny_config()
    out = {}
    for num_t in (2, 32):
        config.training.eval_num_t = num_t
        _, data, trainer = training.setup(config)
        out[num_t] = trainer.evaluate(trainer.init_state(0).params, data.eval_batches(2))
    assert out[32]["eval_num_t"] == 32 and out[32]["eval_sequences"] == 32
    assert out[32]["eval_mc_se_bpt"] < 0.5 * out[2]["eval_mc_se_bpt"]
    assert abs(out[32]["eval_bpt"] - out[2]["eval_bpt"]) < 4 * out[2]["eval_se_bpt"]
