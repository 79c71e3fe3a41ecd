"""The 'diffusion' method: prepare/loss agree, label dropout trains the null label (for
classifier-free guidance), and the loss is the process's objective on the corrupted batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic_absorbing
from discrete_diffusion import losses, methods

K, L, B = 5, 6, 64


def _method(label_dropout: float, num_labels: int = 3, process: str = "masked"):
    config = synthetic_absorbing.get_config()
    config.process.name = process
    config.process.num_classes = K
    config.model.num_layers, config.model.d_model, config.model.num_heads = 1, 16, 2
    config.model.cond_dim = 8
    config.model.num_labels = num_labels
    config.training.label_dropout = label_dropout
    config.model.noise_input = process == "uniform_absorbing"
    method = methods.get(config, K)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K),
             "label": jax.random.randint(jax.random.key(1), (B,), 0, num_labels)}
    params = method.init(jax.random.PRNGKey(2), {"tokens": batch["tokens"][:1],
                                                 "label": batch["label"][:1]})
    return method, params, batch


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_label_dropout_trains_the_null_label(p):
    """Without dropout the null label's embedding row gets no gradient (CFG's unconditional
    branch would stay at its initialisation); with dropout it does, for about p of the rows."""
    method, params, batch = _method(p)
    # DiT zero-initialises adaLN and the output head, so at init no label gets a gradient: perturb
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(6), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                       for x, k in zip(leaves, keys, strict=True)])
    grads = jax.grad(lambda q: method.loss(q, batch, jax.random.key(3), train=True)[0])(params)
    table = grads["network"]["label_embed"]["embedding"]  # [num_labels + 1, C]
    null = np.abs(np.asarray(table[-1])).max()
    assert np.abs(np.asarray(table[:-1])).max() > 0
    if p == 0.0:
        assert null == 0.0
    else:
        assert null > 0.0
        labels = method._label_inputs(batch, True, jax.random.key(4))["label"]
        frac = float(jnp.mean(labels == method.model.num_labels))
        assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / B)
    # evaluation never drops labels
    assert method._label_inputs(batch, False, jax.random.key(4))["label"].tolist() == \
        batch["label"].tolist()


@pytest.mark.parametrize("process", ["masked", "uniform", "uniform_absorbing"])
def test_loss_is_the_objective_on_the_prepared_batch(process):
    method, params, batch = _method(0.0, num_labels=0, process=process)
    batch = {"tokens": batch["tokens"]}
    key = jax.random.key(5)
    prepared = method.prepare(batch, key)
    assert prepared["t"].shape == (B,) and prepared["x_t"].shape == (B, L)
    assert set(prepared["extras"]) == ({"noise"} if process == "uniform_absorbing" else set())
    loss, aux = method.loss(params, prepared, key, train=False)
    loss_raw, _ = method.loss(params, batch, key, train=False)  # prepares itself with the same key
    np.testing.assert_allclose(float(loss), float(loss_raw), rtol=1e-6)
    logits = method.network(params, prepared["x_t"], prepared["t"], **prepared["extras"])
    nelbo = losses.nelbo_per_token(method.proc, method.parameterization, logits, batch["tokens"],
                                   prepared["x_t"], prepared["t"][:, None], **prepared["extras"])
    np.testing.assert_allclose(np.asarray(aux["nelbo"]), np.asarray(nelbo), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), float(jnp.sum(nelbo)) / (B * L), rtol=1e-5)
    samples = method.nelbo_samples(params, batch, key, 3)
    assert samples.shape == (B, 3) and np.all(np.isfinite(np.asarray(samples)))


def test_generate_compiles_once_and_matches_the_functional_sampler():
    """Repeated samples (training loop, eval, sweeps) reuse one compiled sampler per sampler
    section, and give what `sampling.generate` gives with the same network and key."""
    from discrete_diffusion import sampling

    method, params, _ = _method(0.0, num_labels=0)
    r1 = method.generate(params, jax.random.key(7), 3, L)
    params2 = jax.tree.map(lambda x: x * 1.01, params)
    method.generate(params2, jax.random.key(8), 3, L)
    assert len(method._samplers) == 1
    (fn,) = method._samplers.values()
    assert fn._cache_size() == 1
    ref = sampling.generate(jax.random.key(7), method.model_fn(params), method.config, 3, L)
    np.testing.assert_array_equal(np.asarray(r1.tokens), np.asarray(ref.tokens))
    assert r1.nfe == ref.nfe
    section = method.config.sampler.copy_and_resolve_references()
    section.num_steps = 3
    method.generate(params, jax.random.key(7), 3, L, sampler_config=section)
    assert len(method._samplers) == 2
