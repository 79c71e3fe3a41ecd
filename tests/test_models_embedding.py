"""models/embedding.py: the token embedding's gradient formed in a [T + 1, D] table equals
autodiff's scatter-add into [V, D] (bit for bit here), on both paths and with repeated, negative
and out-of-range ids; `Embed` is flax's Embed with that gradient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models import transformer
from discrete_diffusion.models.embedding import Embed, embedding_grad, embedding_lookup

V, D = 50, 8
TABLE = jax.random.normal(jax.random.key(0), (V, D))
IDS = {
    "repeats": jnp.array([[3, 5, 3, 0], [49, 3, 7, 5]]),  # T + 1 = 9 < V: the [T + 1, D] table
    "negative and out of range": jnp.array([[1, -1, 50, 2, -50, 77]]),
    "more tokens than the vocabulary": jnp.arange(60).reshape(6, 10) % V,  # the [V, D] table
    "one token": jnp.array([7]),
}


def _autodiff_grad(ids, g):
    return jax.vjp(lambda t: jnp.take(t, ids, axis=0), TABLE)[1](g)[0]


@pytest.mark.parametrize("name", sorted(IDS))
def test_gradient_equals_autodiff(name):
    ids = IDS[name]
    g = jax.random.normal(jax.random.key(1), ids.shape + (D,))
    ours = jax.jit(lambda t, i, g: jax.vjp(lambda t: embedding_lookup(t, i), t)[1](g)[0])(
        TABLE, ids, g)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(_autodiff_grad(ids, g)))
    np.testing.assert_array_equal(np.asarray(embedding_lookup(TABLE, ids)),
                                  np.asarray(jnp.take(TABLE, ids, axis=0)))


def test_gradient_by_enumeration():
    """G[v] = sum of the rows whose id is v, summed by hand."""
    ids = np.array([4, 1, 4, 4, 9, 1])
    g = np.arange(6 * 3, dtype=np.float32).reshape(6, 3)
    want = np.zeros((12, 3), np.float32)
    for t, v in enumerate(ids):
        want[v] += g[t]
    np.testing.assert_array_equal(np.asarray(jax.jit(embedding_grad, static_argnums=2)(
        jnp.asarray(g), jnp.asarray(ids), 12)), want)


def test_small_table_path_scatters_into_no_vocabulary_sized_table():
    """With T + 1 < V the gradient scatter-adds into [T + 1, D] only (autodiff: into [V, D]).
    (The bytes this saves depend on XLA's emitters, which the test session changes: measured by
    `benchmarks/embedding_grad.py`, 0.64 -> 0.36 GB at the 12-layer shape.)"""
    table = jnp.zeros((5000, 256))
    ids = jnp.arange(64) % 17

    def grad_fn(f):
        return jax.grad(lambda t: jnp.sum(f(t, ids) ** 2))

    def scatter_add_shapes(f):
        jaxpr = jax.make_jaxpr(grad_fn(f))(table)
        found = []

        def walk(jx):
            for eqn in jx.eqns:
                if eqn.primitive.name == "scatter-add":
                    found.append(tuple(eqn.outvars[0].aval.shape))
                for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                    walk(sub)

        walk(jaxpr.jaxpr)
        return found

    assert (5000, 256) in scatter_add_shapes(lambda t, i: jnp.take(t, i, axis=0))
    assert scatter_add_shapes(embedding_lookup) == [(65, 256)]


def test_embed_is_flax_embed_with_this_gradient(monkeypatch):
    """The transformer's token embedding: same parameters and outputs as flax's Embed, and the
    same gradients of a whole model's output (T + 1 < V here: the small-table path)."""
    x = jnp.array([[1, 2, 2, 40]])
    params = nn.Embed(V, D).init(jax.random.key(0), x)
    np.testing.assert_array_equal(np.asarray(Embed(V, D).apply(params, x)),
                                  np.asarray(nn.Embed(V, D).apply(params, x)))
    assert jax.tree.structure(Embed(V, D).init(jax.random.key(0), x)) == jax.tree.structure(params)

    model = transformer.DiffusionTransformer(num_classes=V - 1, input_vocab_size=V, num_layers=1,
                                             d_model=16, num_heads=2, cond_dim=8, dropout=0.0)
    ids = jnp.array([[1, 5, 5, 9, 30, 1]])
    sigma = jnp.array([0.3])
    # Zero-initialised adaLN and output layers pass no gradient back: perturb every parameter.
    variables = jax.tree.map(lambda p: p + 0.1, model.init(jax.random.key(0), ids, sigma))

    def grads():
        return jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, ids, sigma) ** 2)))(variables)

    ours = grads()
    monkeypatch.setattr(transformer, "Embed", nn.Embed)
    theirs = grads()
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    table_grad = ours["params"]["token_embed"]["embedding"]
    assert np.any(np.asarray(table_grad[5]) != 0) and np.all(np.asarray(table_grad[2]) == 0)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from discrete_diffusion.models.embedding import embedding_lookup
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "fsdp"))
    rng = np.random.default_rng(0)
    V, D = 3000, 64
    ids = rng.integers(0, 40, (8, 16)).astype(np.int32)  # T = 128 < V, many repeats
    table = rng.standard_normal((V, D)).astype(np.float32)
    g = rng.standard_normal((8, 16, D)).astype(np.float32)
    put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))
    grad = jax.jit(lambda t, i, g: jax.vjp(lambda t: embedding_lookup(t, i), t)[1](g)[0])(
        put(table, P("fsdp", None)), put(ids, P("data")), put(g, P("data")))
    want = np.zeros((V, D), np.float64)
    np.add.at(want, ids.reshape(-1), g.reshape(-1, D).astype(np.float64))
    print(json.dumps({{"devices": len(jax.devices()),
                       "error": float(np.max(np.abs(np.asarray(grad) - want)))}}))
    """
)


def test_gradient_under_data_and_fsdp_sharding():
    """8 CPU devices, ids and cotangents split over 'data', the table over 'fsdp': the gradient
    is the per-id sum (float64 NumPy), whatever GSPMD does with the small table."""
    from test_train import ROOT, xla_flags

    env = dict(os.environ, XLA_FLAGS=xla_flags(8), JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", _SHARDED.format(root=ROOT)], env=env,
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    assert out["error"] < 1e-5
