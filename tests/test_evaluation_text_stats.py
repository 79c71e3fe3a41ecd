"""Diversity statistics on hand-computed tiny inputs: unigram entropy, distinct-n, repetition,
valid-part selection (EOS, lengths, masks) and strings split into characters or words."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.evaluation import text_stats as ts

H_AAB = math.log(3) - (2 / 3) * math.log(2)  # entropy of (2/3, 1/3) in nats


def test_unigram_entropy_by_hand():
    h = ts.unigram_entropy(["aab", "abcd", "aaaa", "a"])
    np.testing.assert_allclose(h, [H_AAB, math.log(4), 0.0, 0.0])
    bits = ts.unigram_entropy(["aab"], base=2)
    assert bits[0] == pytest.approx(math.log2(3) - 2 / 3)
    assert np.isnan(ts.unigram_entropy([""])[0])


def test_token_arrays_numpy_jax_and_ragged_agree():
    x = np.array([[1, 1, 2, 2], [3, 3, 3, 4]])
    expected = [math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    np.testing.assert_allclose(ts.unigram_entropy(x), expected)
    np.testing.assert_allclose(ts.unigram_entropy(jnp.asarray(x)), expected)
    np.testing.assert_allclose(ts.unigram_entropy([[1, 1, 2, 2], [3, 3, 3, 4]]), expected)
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        ts.unigram_entropy(np.zeros((2, 3, 4), np.int32))


def test_distinct_n_and_repetition_by_hand():
    np.testing.assert_allclose(ts.distinct_n(["aab"], 1), [2 / 3])
    np.testing.assert_allclose(ts.distinct_n(["abab"], 2), [2 / 3])  # ab, ba, ab
    np.testing.assert_allclose(ts.distinct_n(["abab"], 3), [1.0])  # aba, bab
    assert np.isnan(ts.distinct_n(["ab"], 3)[0])  # no trigram
    # 4-grams of 1 2 3 4 1 2 3 4: 1234 2341 3412 4123 1234 -> one repeat out of five.
    np.testing.assert_allclose(ts.repetition_rate(np.array([[1, 2, 3, 4, 1, 2, 3, 4]]), 4), [0.2])
    np.testing.assert_allclose(ts.repetition_rate(np.array([[7] * 10]), 4), [6 / 7])  # a loop
    np.testing.assert_allclose(ts.repetition_rate(["abcdefg"], 4), [0.0])


def test_corpus_distinct_pools_the_set():
    np.testing.assert_allclose(ts.distinct_n(["ab", "ab"], 1), [1.0, 1.0])
    assert ts.corpus_distinct_n(["ab", "ab"], 1) == pytest.approx(2 / 4)
    # n-grams never cross samples: "ab" + "ba" has bigrams ab, ba only (not "bb").
    assert ts.corpus_distinct_n(["ab", "ba"], 2) == pytest.approx(1.0)
    assert ts.corpus_distinct_n(["abc", "abd", "xy"], 2) == pytest.approx(4 / 5)
    assert math.isnan(ts.corpus_distinct_n(["a"], 2))


def test_words():
    samples = ["the cat the dog", "a a a"]
    h = ts.unigram_entropy(samples, unit="word")
    np.testing.assert_allclose(h, [1.5 * math.log(2), 0.0])  # (1/2, 1/4, 1/4) and (1)
    # Word ids are shared across samples: "a" and "the" are distinct, "a" is one type.
    assert ts.corpus_distinct_n(samples, 1, unit="word") == pytest.approx(4 / 7)
    assert ts.corpus_distinct_n(["x y", "x y"], 2, unit="word") == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="unit"):
        ts.unigram_entropy(samples, unit="byte")


def test_eos_lengths_and_mask():
    EOS = 0
    x = np.array([[5, 5, 7, EOS, 9, 9], [1, 2, 3, 4, 5, 6], [EOS, 1, 1, 1, 1, 1]])
    h = ts.unigram_entropy(x, eos_id=EOS)
    np.testing.assert_allclose(h[:2], [H_AAB, math.log(6)])  # cut before the first EOS; no EOS: all
    assert np.isnan(h[2])  # empty sample
    np.testing.assert_allclose(ts.unigram_entropy(x, lengths=[2, 2, 3]), [0.0, math.log(2), H_AAB])
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 0]], bool)
    np.testing.assert_allclose(ts.unigram_entropy(x, mask=mask), [H_AAB, math.log(3), 0.0])
    # Order: mask, then lengths, then EOS.
    seqs = ts.sequences(x, mask=mask, lengths=[2, 3, 2], eos_id=EOS)
    assert [s.tolist() for s in seqs] == [[5, 5], [1, 3, 5], [1, 1]]
    with pytest.raises(ValueError, match="strings"):
        ts.unigram_entropy(["ab"], eos_id=0)


def test_summarize():
    x = np.array([[1, 1, 2, 0, 0], [3, 4, 3, 4, 3], [0, 9, 9, 9, 9]])
    s = ts.summarize(x, eos_id=0, distinct=(1, 2), repetition=2)
    assert s["num_samples"] == 3 and s["num_empty"] == 1
    assert s["mean_length"] == pytest.approx((3 + 5 + 0) / 3)
    h2 = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    assert s["unigram_entropy"] == pytest.approx((H_AAB + h2) / 2)  # the empty sample is left out
    assert s["unigram_entropy_bits"] == pytest.approx(s["unigram_entropy"] / math.log(2))
    assert s["unigram_entropy_se"] == pytest.approx(abs(H_AAB - h2) / 2)  # std(ddof=1)/sqrt(2)
    assert s["distinct_1"] == pytest.approx((2 / 3 + 2 / 5) / 2)
    assert s["corpus_distinct_1"] == pytest.approx(4 / 8)
    assert s["distinct_2"] == pytest.approx((1.0 + 2 / 4) / 2)  # (11, 12); (34, 43, 34, 43)
    assert s["corpus_distinct_2"] == pytest.approx(4 / 6)
    assert s["repetition_2"] == pytest.approx((0.0 + 0.5) / 2)
    assert set(ts.summarize(["ab"])) >= {"distinct_3", "corpus_distinct_3", "repetition_4"}


def test_large_and_negative_ids_use_exact_byte_keys():
    """n-grams are keyed by a base-(max id + 1) integer when it fits in int64, else by their
    bytes: both give the same counts (ids scaled by 10^15 or shifted negative here)."""
    z = np.random.default_rng(1).integers(0, 3, (6, 40))
    for other in (z * 10**15, z - 1):
        for n in (1, 3, 5):
            np.testing.assert_array_equal(ts.distinct_n(other, n), ts.distinct_n(z, n))
            assert ts.corpus_distinct_n(other, n) == ts.corpus_distinct_n(z, n)
    ragged = [z[0], z[1, :2], z[2, :0]]  # too short and empty samples
    assert ts.corpus_distinct_n([r * 10**15 for r in ragged], 3) == ts.corpus_distinct_n(ragged, 3)


def test_real_words_pools_the_set_with_the_ratio_standard_error():
    vocab = {"the", "king", "is", "dead"}
    texts = ["the kinq is dead", "xx the", "king", ""]  # real/words: 3/4, 1/2, 1/1, 0/0
    out = ts.real_words(texts, vocab)
    assert out["real_word_fraction"] == pytest.approx(5 / 7) and out["num_words"] == 7
    a, b, r = np.array([3, 1, 1, 0.0]), np.array([4, 2, 1, 0.0]), 5 / 7
    se = math.sqrt(np.sum((a - r * b) ** 2) / (4 * 3)) / b.mean()  # delta method by hand
    assert out["real_word_fraction_se"] == pytest.approx(se)
    none = ts.real_words(["", "?!"], vocab)
    assert math.isnan(none["real_word_fraction"]) and none["num_words"] == 0
