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
from typing import Any

import numpy as np

from discrete_diffusion.data import text_memo, tokenizers

PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u2014\u2013"


def words(text: str) -> list[str]:
    """The words of ``text``: ``[w.strip(PUNCTUATION).lower() for w in text.split()]``, the
    empty ones dropped."""
    out = (w.strip(PUNCTUATION).lower() for w in text.split())
    return [w for w in out if w]


def vocabulary(texts: Sequence[str]) -> frozenset[str]:
    """The set of words of a corpus (a collection of documents); kept in
    ``text_memo.TEXT_MEMO`` under the texts' digest, since every DataBundle of one corpus in a
    process (train, eval and sample modes) asks for it."""
    return text_memo.TEXT_MEMO.get_or_compute(
        ("vocabulary", tokenizers.corpus_fingerprint(texts)), lambda: _vocabulary(texts), size=len)


def _vocabulary(texts: Iterable[str]) -> frozenset[str]:
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


def heldout_fraction(data: Any, vocabulary: Collection[str], num_sequences: int = 64) -> float:
    """The real-word fraction of the first `num_sequences` held-out sequences of a DataBundle,
    decoded as samples are: the reference a sample set's fraction is read against (computed once
    per bundle, kept in ``data.info['heldout_real_word_fraction']``)."""
    if "heldout_real_word_fraction" not in data.info:
        texts: list[str] = []
        for batch in data.eval_batches():
            valid = batch.get("valid", np.ones(len(batch["tokens"]), bool))
            texts += [data.tokenizer.decode(r.tolist()) for r in np.asarray(batch["tokens"])[valid]]
            if len(texts) >= num_sequences:
                break
        real, total = real_word_counts(texts[:num_sequences], vocabulary)
        data.info["heldout_real_word_fraction"] = float(real.sum() / max(int(total.sum()), 1))
    return data.info["heldout_real_word_fraction"]


def real_word_line(data: Any, texts: Sequence[str]) -> str | None:
    """'real words: 41.7% of 96 (held-out text: 94.2%)' for samples of a text corpus (a bundle
    with ``info['word_vocabulary']``), else None."""
    vocabulary_of = data.info.get("word_vocabulary")
    if vocabulary_of is None:
        return None
    vocabulary = vocabulary_of()
    real, total = real_word_counts(texts, vocabulary)
    n = int(total.sum())
    share = f"{real.sum() / n:.1%} of {n}" if n else "no words"
    return f"real words: {share} (held-out text: {heldout_fraction(data, vocabulary):.1%})"
