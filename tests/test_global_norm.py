"""training/global_norm.py: the value of optax.tree.norm (and of float64 enumeration) on random
trees of every rank, and a compiled program without the padded 2-D tile reduction that XLA:CPU
runs slowly."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from discrete_diffusion.training.global_norm import global_norm, leaf_squared_norm


def _tree(seed: int, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    shapes = {"scalar": (), "bias": (7,), "kernel": (33, 1001), "heads": (5, 3, 4, 9),
              "out": (64, 50)}
    return {k: jnp.asarray(scale * rng.standard_normal(s), jnp.float32)
            for k, s in shapes.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_optax_tree_norm_and_float64(seed):
    tree = _tree(seed)
    ours = float(jax.jit(global_norm)(tree))
    exact = float(np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2)
                              for x in jax.tree.leaves(tree))))
    assert ours == pytest.approx(exact, rel=1e-6)
    assert ours == pytest.approx(float(jax.jit(optax.tree.norm)(tree)), rel=1e-6)


def test_each_leaf_and_edge_cases():
    tree = _tree(3, scale=1e-3)
    for x in jax.tree.leaves(tree):
        want = float(np.sum(np.asarray(x, np.float64) ** 2))
        assert float(leaf_squared_norm(x)) == pytest.approx(want, rel=1e-6)
    assert float(global_norm({})) == 0.0
    # bfloat16 leaves are squared and summed in float32
    x = jnp.full((40, 70), 3.0, jnp.bfloat16)
    assert leaf_squared_norm(x).dtype == jnp.float32
    assert float(global_norm([x])) == pytest.approx(3.0 * np.sqrt(40 * 70), rel=1e-6)
    # a non-finite leaf makes the norm non-finite (the trainer's skip relies on it)
    bad = dict(tree, kernel=tree["kernel"].at[3, 5].set(jnp.nan))
    assert not np.isfinite(float(global_norm(bad)))
    inf = dict(tree, bias=tree["bias"].at[0].set(jnp.inf))
    assert float(global_norm(inf)) == np.inf


def _padded_tile_reductions(hlo: str) -> list[str]:
    """reduce-window ops whose window spans more than one dimension and pads one of them."""
    found = []
    for line in hlo.splitlines():
        m = re.search(r"reduce-window\(.*window=\{size=([\dx]+) .*?(pad=[\d_x]+)?[,}]", line)
        if m and sum(int(s) > 1 for s in m.group(1).split("x")) > 1 and "pad=" in line:
            found.append(line.strip()[:160])
    return found


def test_compiled_gradient_norm_has_no_padded_tile_reduction():
    """The output layer's kernel gradient (a matmul output whose minor dimension, 1001, is not a
    multiple of 32): optax.tree.norm compiles to a 32 x 32 padded reduce-window on the CPU (the
    slow reduction of the module doc), global_norm to reductions without it."""
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((128, 64)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((64, 1001)), jnp.float32)

    def loss(w, h):
        return jnp.sum(jax.nn.log_softmax(h @ w)[:, 0])

    def hlo(norm_fn):
        step = jax.jit(lambda w, h: (lambda g: (g, norm_fn(g)))(jax.grad(loss)(w, h)))
        return step.lower(w, h).compile().as_text()

    if jax.default_backend() == "cpu":  # what the rewrite is for; the check below has power
        assert _padded_tile_reductions(hlo(optax.tree.norm))
    assert not _padded_tile_reductions(hlo(global_norm))
