"""Autoregressive sampling: fed the exact conditionals of a toy law, it samples that law."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from discrete_diffusion.sampling.autoregressive import generate_autoregressive
from discrete_diffusion.testing.oracle import empirical_law, expected_tv_floor, total_variation, toy_law


def exact_ar_logits_fn(p0: np.ndarray):
    """logits_fn(inputs [N, L]) -> [N, L, K]: log p(x^i | x^{<i}) of the toy law p0 ([K]*L),
    reading x^{<i} from the teacher-forcing inputs (BOS, x^1, ..., x^{L-1})."""
    K, L = p0.shape[0], p0.ndim
    # prefix marginals: cond[i][prefix index, v] = p(x^i = v | x^{<i} = prefix)
    tables = []
    for i in range(L):
        marg = p0.sum(axis=tuple(range(i + 1, L))).reshape(K**i, K)
        tables.append(jnp.asarray(np.log(marg / np.maximum(marg.sum(-1, keepdims=True), 1e-300)
                                         + 1e-300), jnp.float32))

    def fn(inputs):
        x = inputs[:, 1:]  # x^1 .. x^{L-1}
        out = []
        for i in range(L):
            idx = jnp.zeros(inputs.shape[0], jnp.int32)
            for j in range(i):
                idx = idx * K + x[:, j]
            out.append(tables[i][idx])
        return jnp.stack(out, axis=1)

    return fn


def test_exact_conditionals_reach_the_tv_floor():
    K, L, n = 3, 3, 20000
    p0 = toy_law(K, L, seed=3)
    fn = exact_ar_logits_fn(p0)
    samples = jax.jit(lambda k: generate_autoregressive(k, fn, n, L, bos_id=K))(jax.random.key(0))
    tv = total_variation(empirical_law(np.asarray(samples), K), p0.reshape(-1))
    assert tv < 1.5 * expected_tv_floor(p0.reshape(-1), n)


def test_causality_future_positions_are_ignored_and_top_k_one_is_greedy():
    K, L = 4, 5
    p0 = toy_law(K, L, seed=1)
    fn = exact_ar_logits_fn(p0)
    greedy = generate_autoregressive(jax.random.key(1), fn, 2, L, bos_id=K, top_k=1)
    # greedy decoding picks argmax p(x^i | prefix) at every position
    x = np.asarray(greedy)[0]
    for i in range(L):
        marg = p0.sum(axis=tuple(range(i + 1, L)))[tuple(x[:i])]
        assert x[i] == int(np.argmax(marg))
    np.testing.assert_array_equal(np.asarray(greedy)[0], np.asarray(greedy)[1])
