"""The `pair_hash` corpus (data/pair_hash.py): its exact law and entropy by enumeration, the easy
order's conditionals (uniform, then deterministic), the reversed direction, and the data source."""

import itertools
import math

import ml_collections
import numpy as np
import pytest

from discrete_diffusion import data as dd
from discrete_diffusion.data import pair_hash

K, L = 3, 4  # n = 2: x_1, x_2, y_1 = f(x_1, x_2), y_2 = f(x_2, x_1)


def _law(corpus: pair_hash.PairHash) -> tuple[np.ndarray, np.ndarray]:
    """All K^L sequences and their exact probabilities (from exact_log_likelihood)."""
    seqs = np.array(list(itertools.product(range(K), repeat=L)))
    return seqs, np.exp(corpus.exact_log_likelihood(seqs))


@pytest.mark.parametrize("direction", pair_hash.DIRECTIONS)
def test_exact_law_entropy_and_samples(direction):
    corpus = pair_hash.PairHash.random(K, seed=2, direction=direction)
    seqs, p = _law(corpus)
    assert p.sum() == pytest.approx(1.0) and np.count_nonzero(p) == K ** (L // 2)
    nz = p[p > 0]
    assert -(nz * np.log(nz)).sum() == pytest.approx(corpus.sequence_entropy(L))
    assert corpus.sequence_entropy(L) == pytest.approx((L // 2) * math.log(K))
    assert corpus.entropy_rate(L) == pytest.approx(math.log(K) / 2)
    draws = corpus.sample(30_000, L, seed=0)
    assert np.isfinite(corpus.exact_log_likelihood(draws)).all()
    index = {tuple(s): i for i, s in enumerate(seqs)}
    freq = np.bincount([index[tuple(s)] for s in draws], minlength=len(seqs)) / len(draws)
    assert 0.5 * np.abs(freq - p).sum() < 0.02
    for y, a, b in corpus.parents(L):  # the written positions of each y and its parents
        np.testing.assert_array_equal(draws[:, y], corpus.table[draws[:, a], draws[:, b]])


def test_reversed_is_the_forward_corpus_written_backwards():
    fwd = pair_hash.PairHash.random(K, seed=2)
    rev = pair_hash.PairHash.random(K, seed=2, direction="reversed")
    np.testing.assert_array_equal(rev.sample(50, L, seed=1), fwd.sample(50, L, seed=1)[:, ::-1])
    np.testing.assert_array_equal(rev.x_positions(L), [2, 3])
    np.testing.assert_array_equal(fwd.x_positions(L), [0, 1])


def test_x_first_conditionals_are_uniform_then_deterministic_and_y_first_are_not():
    """By enumeration: H(x_i | x_<i) = log K and H(y_i | x, y_<i) = 0 in the x-first order; the
    y-first order starts with a non-uniform marginal and ends with non-deterministic inversions
    (the same total n log K: for an exact model every order is equally good)."""
    corpus = pair_hash.PairHash.random(K, seed=2)
    seqs, p = _law(corpus)

    def cond_entropy(order):
        out = []
        for i, pos in enumerate(order):
            ctx = order[:i]
            h = 0.0
            for key in {tuple(s[list(ctx)]) for s in seqs[p > 0]}:
                sel = (seqs[:, list(ctx)] == key).all(1) if ctx else np.ones(len(seqs), bool)
                pc = np.bincount(seqs[sel, pos], weights=p[sel], minlength=K)
                pk = pc.sum()
                q = pc[pc > 0] / pk
                h += pk * -(q * np.log(q)).sum()
            out.append(h)
        return np.array(out)

    x_first = cond_entropy([0, 1, 2, 3])
    np.testing.assert_allclose(x_first, [math.log(K)] * 2 + [0.0] * 2, atol=1e-12)
    y_first = cond_entropy([2, 3, 0, 1])
    assert y_first.sum() == pytest.approx(x_first.sum())
    assert y_first[0] < math.log(K) - 1e-3 and y_first[2:].sum() > 1e-3


def _config(**data):
    config = ml_collections.ConfigDict(
        {"data": dd.default_data_config(), "training": {"batch_size": 8}})
    config.data.update({"name": "pair_hash", "num_threads": 1, "num_train_sequences": 64,
                        "num_eval_sequences": 16, **data})
    return config


def test_data_source_and_its_errors():
    b = dd.get_data(_config(seq_len=6, pair_hash_vocab_size=5), process_index=0, process_count=1)
    assert b.num_classes == 5 and b.seq_len == 6
    assert b.info["sequence_entropy"] == pytest.approx(3 * math.log(5))
    assert b.info["entropy_rate"] == pytest.approx(math.log(5) / 2)
    batch = next(iter(b.eval_batches()))
    assert np.isfinite(b.info["pair_hash"].exact_log_likelihood(batch["tokens"])).all()
    with pytest.raises(ValueError, match="config.data.seq_len=7 must be even"):
        dd.get_data(_config(seq_len=7), process_index=0, process_count=1)
    with pytest.raises(ValueError, match=r"config.data.pair_hash_direction='up' is not one of "
                                         r"\['forward', 'reversed'\]"):
        dd.get_data(_config(pair_hash_direction="up"), process_index=0, process_count=1)
