"""Words of a text, as the real-word fraction of generated text counts them.

A word is a whitespace-separated piece of text with its leading and trailing punctuation
removed and its letters lower-cased (``"Macbeth!"`` and ``"macbeth,"`` are both ``"macbeth"``);
a piece made only of punctuation (``"--"``, ``"?"``) is no word. The vocabulary of a corpus is
the set of its words; `real_word_counts` counts a generated word as real when it lies in the
vocabulary of the training corpus (`evaluation.text_stats.real_words`: the fraction over a sample
set with its standard error).
"""

from __future__ import annotations

import string
from collections.abc import Collection, Iterable, Sequence

import numpy as np

PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u2014\u2013"


def words(text: str) -> list[str]:
    """The words of ``text``: ``[w.strip(PUNCTUATION).lower() for w in text.split()]``, the
    empty ones dropped."""
    out = (w.strip(PUNCTUATION).lower() for w in text.split())
    return [w for w in out if w]


def vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """The set of words of a corpus (a collection of documents)."""
    vocab: set[str] = set()
    for text in texts:
        vocab.update(words(text))
    return frozenset(vocab)


def real_word_counts(texts: Sequence[str], vocabulary: Collection[str]) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """Per text: (its words found in ``vocabulary``, its words), int64 ``[N]`` each."""
    if isinstance(texts, str):
        raise TypeError("texts must be a collection of decoded samples, not a single string")
    per_text = [words(t) for t in texts]
    real = np.array([sum(w in vocabulary for w in ws) for ws in per_text], dtype=np.int64)
    total = np.array([len(ws) for ws in per_text], dtype=np.int64)
    return real, total
