"""The in-process memo of corpus-wide work (data/text_memo.py) and its two users:
`tokenizers.encode_corpus` and `words.vocabulary`."""

from __future__ import annotations

import numpy as np
import pytest

from discrete_diffusion.data import text_memo, words
from discrete_diffusion.data import tokenizers as tl

CORPUS = ["To be, or not to be, that is the question:\n",
          "Whether 'tis nobler in the mind to suffer\n",
          "The slings and arrows of outrageous fortune,\n"] * 20


def test_memo_computes_once_per_key_and_evicts_least_recently_used():
    memo = text_memo.TextMemo(max_entries=2, max_items=100)
    calls = []

    def make(v):
        def compute():
            calls.append(v)
            return np.full(3, v)
        return compute

    a = memo.get_or_compute("a", make(1), size=len)
    assert memo.get_or_compute("a", make(99), size=len) is a and calls == [1]
    memo.get_or_compute("b", make(2), size=len)
    memo.get_or_compute("a", make(99), size=len)  # a is now the most recently used
    memo.get_or_compute("c", make(3), size=len)  # evicts b
    memo.get_or_compute("a", make(99), size=len)
    memo.get_or_compute("b", make(4), size=len)
    assert calls == [1, 2, 3, 4] and (memo.hits, memo.misses) == (3, 4)


def test_memo_bounds_items_and_keeps_nothing_too_large():
    memo = text_memo.TextMemo(max_entries=10, max_items=5)
    memo.get_or_compute("big", lambda: np.zeros(6), size=len)
    memo.get_or_compute("big", lambda: np.zeros(6), size=len)
    assert memo.misses == 2  # over max_items: computed each time, never stored
    memo.get_or_compute("x", lambda: np.zeros(3), size=len)
    memo.get_or_compute("y", lambda: np.zeros(3), size=len)  # 6 > 5 items: x goes
    memo.get_or_compute("y", lambda: np.zeros(3), size=len)
    memo.get_or_compute("x", lambda: np.zeros(3), size=len)
    assert (memo.hits, memo.misses) == (1, 5)


def test_kept_arrays_are_read_only():
    memo = text_memo.TextMemo()
    docs = memo.get_or_compute("k", lambda: [np.arange(3), np.arange(2)], size=len)
    with pytest.raises(ValueError, match="read-only"):
        docs[0][0] = 7


@pytest.fixture
def fresh_memo(monkeypatch):
    memo = text_memo.TextMemo()
    monkeypatch.setattr(text_memo, "TEXT_MEMO", memo)
    return memo


def test_encode_corpus_encodes_a_corpus_once_per_tokenizer(fresh_memo):
    tok = tl.SentencePieceTokenizer.train(CORPUS, vocab_size=60)
    first = tl.encode_corpus(tok, CORPUS)
    again = tl.encode_corpus(tl.SentencePieceTokenizer(tok._proto), list(CORPUS))  # equal model
    assert again is first and (fresh_memo.hits, fresh_memo.misses) == (1, 1)
    for got, want in zip(first, tl.encode_documents(tok, CORPUS), strict=True):
        np.testing.assert_array_equal(got, want)
    changed = tl.encode_corpus(tok, CORPUS[:-1] + ["The slings and arrows,\n"])
    assert fresh_memo.misses == 2 and tok.decode(changed[-1]) == "The slings and arrows,\n"
    other = tl.SentencePieceTokenizer.train(CORPUS, vocab_size=50)
    assert tl.encode_corpus(other, CORPUS) is not first and fresh_memo.misses == 3
    chars = tl.CharTokenizer.from_texts(CORPUS)  # fast already: not kept
    tl.encode_corpus(chars, CORPUS)
    assert fresh_memo.misses == 3


def test_vocabulary_is_computed_once_per_corpus(fresh_memo):
    v = words.vocabulary(CORPUS)
    assert words.vocabulary(list(CORPUS)) is v and fresh_memo.hits == 1
    assert "question" in v and "slings" in v
    assert "fortune" not in words.vocabulary(CORPUS[:2]) and fresh_memo.misses == 2
