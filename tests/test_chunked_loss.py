"""Chunked output projection + loss (`config.model.logits_chunk`, methods/diffusion.py): the
per-token losses, the NELBO and the gradients equal those of the whole-logits path for every
process x parameterization x objective, including a chunk that does not divide L; the network's
`return_hidden` + `project_hidden` give its logits; chunking keeps no [B, L, K] array."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic_absorbing
from discrete_diffusion import config_validation, methods

K, L, B = 5, 7, 3


def _small(config, chunk: int):
    """config with K classes, a one-layer d = 16 network and logits_chunk = chunk."""
    config.process.num_classes = K
    config.model.num_layers, config.model.d_model, config.model.num_heads = 1, 16, 2
    config.model.cond_dim = 8
    config.model.logits_chunk = chunk
    return config


def _assert_same_gradients(g0, g1, *, all_nonzero: bool = False, atol_floor: float = 0.0):
    """Leaf by leaf, g1 equals g0 to float32 summation order (relative to each leaf's scale)."""
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        if all_nonzero:
            assert float(jnp.abs(a).max()) > 0
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4,
                                   atol=1e-5 * float(jnp.abs(a).max()) + atol_floor)


def _method(process: str, parameterization: str, loss: str, chunk: int):
    config = _small(synthetic_absorbing.get_config(), chunk)
    config.process.name = process
    config.model.time_conditioning = True
    config.model.parameterization = parameterization
    config.model.noise_input = process == "uniform_absorbing"
    config.training.loss = loss
    return methods.get(config, K)


def _perturbed_params(method, batch):
    params = method.init(jax.random.PRNGKey(2), {"tokens": batch["tokens"][:1]})
    leaves, tree = jax.tree.flatten(params)  # zero-init heads would make every loss trivial
    keys = jax.random.split(jax.random.key(6), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape)
                                     for x, k in zip(leaves, keys, strict=True)])


CASES = [
    ("masked", "denoiser", "elbo"),
    ("masked", "score", "score_entropy"),
    ("uniform", "loo", "loo_ce"),
    ("uniform", "score", "elbo"),
    ("uniform_absorbing", "denoiser", "denoising_ce"),
]


@pytest.mark.parametrize("process,parameterization,loss", CASES)
def test_chunked_loss_equals_whole_logits(process, parameterization, loss):
    """From the same hidden states h: per-token loss and NELBO, and the gradients of their sum
    with respect to h and to the projection (W, b), chunked (7 = 2 x 3 + 1) vs whole."""
    method = _method(process, parameterization, loss, 3)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    prep = method.prepare(batch, jax.random.key(3))
    x0, x_t, t, extras = prep["tokens"], prep["x_t"], prep["t"], prep["extras"]
    D = 16
    kh, kw, kb = jax.random.split(jax.random.key(4), 3)
    h = jax.random.normal(kh, (B, L, D))
    out = {"kernel": jax.random.normal(kw, (D, K)), "bias": jax.random.normal(kb, (K,))}
    params = {"network": {"final": {"out": out}}}

    def whole(h, params):
        logits = method.model.project_hidden(params["network"], h)
        return method._token_losses(logits, x0, x_t, t, extras)

    def chunked(h, params):
        return method._chunked_losses(params, h, x0, x_t, t, extras)

    def total(fn):  # d/d(h, W, b) of sum(loss) + 0.5 sum(nelbo): both outputs checked
        return lambda h, p: jnp.sum(fn(h, p)[0]) + 0.5 * jnp.sum(fn(h, p)[1])

    @jax.jit
    def both(h, params):
        grad = lambda fn: jax.grad(total(fn), argnums=(0, 1))(h, params)  # noqa: E731
        return whole(h, params), chunked(h, params), grad(whole), grad(chunked)

    (l0, n0), (l1, n1), g0, g1 = both(h, params)
    assert float(jnp.abs(l0).sum()) > 1e-2 and np.all(np.isfinite(np.asarray(l0)))
    np.testing.assert_allclose(np.asarray(l1), np.asarray(l0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(n1), np.asarray(n0), rtol=1e-5, atol=1e-6)
    _assert_same_gradients(g0, g1, all_nonzero=True)


def test_chunked_method_loss_matches_through_the_network():
    """Through the whole method (network with dropout on, same masks): loss and NELBO (the
    gradients are those of the per-case test above chained through the same network); and
    return_hidden + project_hidden give the network's logits exactly."""
    plain = _method("masked", "denoiser", "elbo", 0)
    chunked = _method("masked", "denoiser", "elbo", 3)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = _perturbed_params(plain, batch)
    key = jax.random.key(3)
    prepared = plain.prepare(batch, key)
    t = prepared["t"]

    @jax.jit
    def run(p):
        losses = [m.loss(p, prepared, key, train=True) for m in (plain, chunked)]
        logits = plain.network(p, prepared["x_t"], t)
        h = plain.network(p, prepared["x_t"], t, return_hidden=True)
        return losses, logits, h, plain.model.project_hidden(p["network"], h)

    ((v0, a0), (v1, a1)), logits, h, projected = run(params)
    assert h.shape == (B, L, plain.model.d_model)
    # the same values up to float32 rounding (XLA may fuse the last projection differently)
    np.testing.assert_allclose(np.asarray(projected), np.asarray(logits), rtol=1e-6, atol=1e-6)
    assert float(v0) > 1e-3
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(a1["nelbo"]), np.asarray(a0["nelbo"]), rtol=1e-5,
                               atol=1e-6)


def test_no_whole_logits_in_the_chunked_gradient():
    """The jaxpr of the chunked value-and-grad holds no [B, L, K] array (the plain one does)."""
    plain = _method("masked", "denoiser", "elbo", 0)
    chunked = _method("masked", "denoiser", "elbo", 2)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = plain.init(jax.random.PRNGKey(2), {"tokens": batch["tokens"][:1]})
    prepared = plain.prepare(batch, jax.random.key(3))

    def shapes(method):
        fn = jax.grad(lambda p: method.loss(p, prepared, jax.random.key(3), train=True)[0])
        text = str(jax.make_jaxpr(fn)(params))
        return text

    assert f"f32[{B},{L},{K}]" in shapes(plain)
    assert f"f32[{B},{L},{K}]" not in shapes(chunked)


def test_logits_chunk_is_validated():
    config = synthetic_absorbing.get_config()
    config.process.num_classes = K
    config.model.logits_chunk = -1
    with pytest.raises(ValueError, match="config.model.logits_chunk"):
        config_validation.validate(config)
    with pytest.raises(ValueError, match="config.model.logits_chunk"):
        methods.get(config, K)


def test_autoregressive_chunked_nll_equals_whole_logits():
    """The AR method with logits_chunk = 3 on L = 7: per-token NLL, loss and parameter gradients
    equal the whole-logits path's, and its gradient's jaxpr holds no [B, L, K] array."""
    from configs import synthetic_ar

    def ar(chunk: int):
        return methods.get(_small(synthetic_ar.get_config(), chunk), K)

    plain, chunked = ar(0), ar(3)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = _perturbed_params(plain, batch)
    key = jax.random.key(3)

    def value_and_grad(method):
        return jax.jit(jax.value_and_grad(lambda p: method.loss(p, batch, key, train=True),
                                          has_aux=True))(params)

    (v0, a0), g0 = value_and_grad(plain)
    (v1, a1), g1 = value_and_grad(chunked)
    assert float(v0) > 1e-2
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(a1["nelbo"]), np.asarray(a0["nelbo"]), rtol=1e-5,
                               atol=1e-6)
    _assert_same_gradients(g0, g1, atol_floor=1e-7)

    def jaxpr(method):
        return str(jax.make_jaxpr(jax.grad(lambda p: method.loss(p, batch, key)[0]))(params))

    assert f"f32[{B},{L},{K}]" in jaxpr(plain)
    assert f"f32[{B},{L},{K}]" not in jaxpr(chunked)


def test_vadd_chunked_delbo_terms_equal_whole_logits():
    """VADD with logits_chunk = 3 on L = 7: the DELBO's CE term and the gradients of the DELBO
    with respect to decoder and encoder parameters equal the whole-logits path's."""

    def vadd(chunk: int):
        config = _small(synthetic_absorbing.get_config(), chunk)
        config.method.name = "vadd"
        config.model.latent_dim = 2
        return methods.get(config, K)

    plain, chunked = vadd(0), vadd(3)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = _perturbed_params(plain, batch)
    prepared = plain.prepare(batch, jax.random.key(3))
    args = (prepared["tokens"], prepared["x_t"], prepared["t"], prepared["eps"])

    def run(method):
        def total(p):
            ce, kl = method.delbo_terms(p, *args)
            return jnp.sum(ce) + jnp.sum(kl), ce
        return jax.jit(jax.value_and_grad(total, has_aux=True))(params)

    (v0, ce0), g0 = run(plain)
    (v1, ce1), g1 = run(chunked)
    assert float(jnp.abs(ce0).sum()) > 1e-2
    np.testing.assert_allclose(np.asarray(ce1), np.asarray(ce0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
    _assert_same_gradients(g0, g1, atol_floor=1e-7)


def _duo(chunk: int, parameterization: str = "loo", top_k: int | None = None):
    from configs import synthetic_uniform

    config = _small(synthetic_uniform.get_config(), chunk)
    config.method.name = "duo"
    config.method.curriculum_steps = 10
    config.method.tau = 0.3
    config.method.top_k = top_k
    config.model.parameterization = parameterization
    return methods.get(config, K)


def _value_and_grad(method, params, batch, key, step=None):
    def fn(p):
        loss, aux = method.loss(p, batch, key, train=True, step=step)
        return loss, aux["nelbo"]
    return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)


@pytest.mark.parametrize("parameterization,top_k,step", [
    ("denoiser", None, 0), ("loo", 2, 0), ("loo", None, 10)])
def test_duo_chunked_losses_equal_whole_logits(parameterization, top_k, step):
    """Duo with logits_chunk = 3 on L = 7, in the curriculum (step 0: the relaxed loss; dense input
    with the denoiser network, top-k input with the loo network) and after it (step 10: the
    discrete NELBO): loss, per-token objective and all parameter gradients equal the whole-logits
    path's."""
    plain, chunked = _duo(0, parameterization, top_k), _duo(3, parameterization, top_k)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = _perturbed_params(plain, batch)
    prepared = plain.prepare(batch, jax.random.key(3))
    key, step = jax.random.key(4), jnp.asarray(step)
    (v0, n0), g0 = _value_and_grad(plain, params, prepared, key, step)
    (v1, n1), g1 = _value_and_grad(chunked, params, prepared, key, step)
    assert float(jnp.abs(n0).sum()) > 1e-2 and np.all(np.isfinite(np.asarray(n0)))
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(n1), np.asarray(n0), rtol=1e-5, atol=1e-6)
    _assert_same_gradients(g0, g1, atol_floor=1e-7)


def test_duo_relaxed_chunked_equals_whole_and_keeps_no_whole_logits():
    """`relaxed` (the curriculum's loss and z_t) with chunks of 2 equals the whole-logits one, and
    the jaxpr of the curriculum's gradient with top-k input holds no [B, L, K] array."""
    plain, chunked = _duo(0, top_k=2), _duo(2, top_k=2)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = _perturbed_params(plain, batch)
    prepared = plain.prepare(batch, jax.random.key(3))
    key, tau = jax.random.key(4), jnp.asarray(0.3)
    r0, r1 = (jax.jit(lambda p, m=m: m.relaxed(p, prepared, key, train=False, tau=tau))(params)
              for m in (plain, chunked))
    np.testing.assert_array_equal(np.asarray(r1["z_t"]), np.asarray(r0["z_t"]))
    np.testing.assert_allclose(np.asarray(r1["loss"]), np.asarray(r0["loss"]), rtol=1e-5,
                               atol=1e-6)

    def jaxpr(method):
        grad = jax.grad(lambda p: method.loss(p, prepared, key, step=jnp.asarray(0))[0])
        return str(jax.make_jaxpr(grad)(params))

    assert f"f32[{B},{L},{K}]" in jaxpr(plain)
    assert f"f32[{B},{L},{K}]" not in jaxpr(chunked)


def _learned_order(chunk: int, schedule: str):
    from configs import synthetic_learned_order

    config = _small(synthetic_learned_order.get_config(), chunk)
    config.method.schedule = schedule
    config.sampler.name = "ancestral"
    return methods.get(config, K)


@pytest.mark.parametrize("schedule", ["position", "value"])
def test_learned_order_chunked_loss_equals_whole_logits(schedule):
    """The learned-order method with logits_chunk = 3 on L = 7 (n = 2 masks per row): loss
    (NELBO + REINFORCE-LOO surrogate), per-token NELBO, the gradients of the network and of the
    schedule's theta, and `nelbo_samples`, equal the whole-logits path's; the gradient's jaxpr
    holds no [n B, L, K] array (the plain one does)."""
    plain, chunked = _learned_order(0, schedule), _learned_order(3, schedule)
    batch = {"tokens": jax.random.randint(jax.random.key(0), (B, L), 0, K)}
    params = _perturbed_params(plain, batch)
    prepared = plain.prepare(batch, jax.random.key(3))
    key = jax.random.key(4)
    (v0, n0), g0 = _value_and_grad(plain, params, prepared, key)
    (v1, n1), g1 = _value_and_grad(chunked, params, prepared, key)
    assert float(jnp.abs(n0).sum()) > 1e-2 and np.all(np.isfinite(np.asarray(n0)))
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(n1), np.asarray(n0), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(g0["schedule"]["theta"]).max()) > 0
    _assert_same_gradients(g0, g1, atol_floor=1e-7)

    s0, s1 = (jax.jit(lambda p, m=m: m.nelbo_samples(p, batch, jax.random.key(5), 2))(params)
              for m in (plain, chunked))
    np.testing.assert_allclose(np.asarray(s1), np.asarray(s0), rtol=1e-5, atol=1e-5)

    def jaxpr(method):
        grad = jax.grad(lambda p: method.loss(p, prepared, key)[0])
        return str(jax.make_jaxpr(grad)(params))

    rows = plain.num_masks * B
    assert f"f32[{rows},{L},{K}]" in jaxpr(plain)
    text = jaxpr(chunked)
    assert f"f32[{rows},{L},{K}]" not in text
    assert f"f32[{plain.num_masks},{B},{L},{K}]" not in text
