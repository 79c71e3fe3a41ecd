"""Diversity statistics of generated samples: unigram entropy, distinct-n, n-gram repetition.

A low generative perplexity is easy to get by lowering the sampling temperature (float32 Gumbel
noise does it silently), so it is reported next to a diversity measure. All statistics here are
computed **per sample, then averaged** over samples (as in MDLM/Duo's "entropy" column), except
``corpus_distinct_n`` which pools the whole set. Here a sample is the sequence
``x_1 .. x_T`` of its valid units (token ids, characters or words).

* unigram entropy of one sample, from the counts ``c_v`` of its ``T`` units (``p_v = c_v / T``):

      H(x) = - sum_v p_v log p_v   nats   (/ ln 2 for bits);

  it lies in ``[0, log min(T, V)]``: 0 for a single repeated token, ``log T`` when all differ.
  Duo's OWT samples of 1024 GPT-2 tokens score about 5.6 nats (Zheng et al.: 5.66 with float64
  sampling, 5.17 with float32).
* distinct-n of one sample with ``T - n + 1`` n-gram occurrences ``g_1 .. g_{T-n+1}``:

      distinct_n(x) = |{g_j}| / (T - n + 1),

  and over a set ``corpus_distinct_n = |union_s {g_j^s}| / sum_s (T_s - n + 1)``.
* repetition rate (``seq-rep-n`` of Welleck et al., 2020): the fraction of n-gram occurrences
  that repeat an earlier one of the same sample,

      rep_n(x) = 1 - distinct_n(x) = (#occurrences - #unique) / #occurrences,

  0 for a sample without a repeated n-gram, -> 1 for a loop.

* real-word fraction of decoded text (``real_words``): the share of its words
  (``data.words.words``: whitespace-separated, outer punctuation stripped, lower-cased) that occur
  in the training corpus's vocabulary ``V`` (``data.words.vocabulary``), pooled over the set,

      real_word_fraction = sum_s #{w in words(x_s) : w in V} / sum_s |words(x_s)|,

  with its standard error as a ratio estimator over samples (``judge.ratio_se``). Held-out text
  of the same corpus is the reference (Shakespeare's held-out plays: 0.942).

A sample with no unit has no entropy, and one shorter than ``n`` has no n-gram: its value is NaN
and it is left out of the means of ``summarize`` (which counts such samples).

Inputs (``Samples``): token ids ``[N, L]`` (numpy or JAX) or a list of 1-D id sequences of any
lengths, or a list of strings, split into characters (``unit='char'``) or whitespace words
(``unit='word'``). For id arrays the valid part of each row is selected by, in this order,
``mask`` (bool ``[N, L]``, True = keep, e.g. padding removed), ``lengths`` (``[N]``: keep the
first ``lengths[i]`` tokens) and ``eos_id`` (keep the tokens before the first EOS; the EOS and
everything after it are dropped, as when decoded samples are cut at their first EOS).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

LN2 = math.log(2.0)

Samples = np.ndarray | Sequence[Sequence[int]] | Sequence[str]


def sequences(
    samples: Samples,
    *,
    lengths: np.ndarray | Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    eos_id: int | None = None,
    unit: str = "char",
) -> list[np.ndarray]:
    """The valid units of each sample as int64 id arrays (see the module docstring).

    Strings are mapped to ids consistently over the whole set (characters by code point, words
    by order of first appearance), so n-grams can be compared across samples.
    """
    if isinstance(samples, str):
        raise TypeError("samples must be a collection of samples, not a single string")
    if len(samples) > 0 and isinstance(samples[0], str):
        if mask is not None or lengths is not None or eos_id is not None:
            raise ValueError("mask, lengths and eos_id apply to token ids, not to strings")
        if unit == "char":
            return [np.array([ord(c) for c in s], dtype=np.int64) for s in samples]
        if unit == "word":
            vocab: dict[str, int] = {}
            return [
                np.array([vocab.setdefault(w, len(vocab)) for w in s.split()], dtype=np.int64)
                for s in samples
            ]
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
    if isinstance(samples, np.ndarray) or hasattr(samples, "shape"):
        arr = np.asarray(samples)
        if arr.ndim != 2:
            raise ValueError(f"token arrays must be [N, L], got shape {arr.shape}")
        rows = list(arr.astype(np.int64))
    else:
        rows = [np.asarray(s, dtype=np.int64).reshape(-1) for s in samples]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if len(mask) != len(rows):
            raise ValueError(f"mask has {len(mask)} rows for {len(rows)} samples")
        rows = [r[m[: len(r)]] for r, m in zip(rows, mask, strict=True)]
    if lengths is not None:
        lengths = np.asarray(lengths).reshape(-1)
        if len(lengths) != len(rows):
            raise ValueError(f"lengths has {len(lengths)} entries for {len(rows)} samples")
        rows = [r[: int(n)] for r, n in zip(rows, lengths, strict=True)]
    if eos_id is not None:
        rows = [_before_first(r, eos_id) for r in rows]
    return rows


def _before_first(row: np.ndarray, value: int) -> np.ndarray:
    hits = np.flatnonzero(row == value)
    return row[: hits[0]] if hits.size else row


def _radix(seqs: list[np.ndarray], n: int) -> int | None:
    """``1 + max id`` of the set when every n-gram's base-radix integer fits in int64 (and no id
    is negative), else None."""
    nonempty = [s for s in seqs if s.size]
    if not nonempty or min(int(s.min()) for s in nonempty) < 0:
        return None
    radix = 1 + max(int(s.max()) for s in nonempty)
    return radix if n * math.log2(max(radix, 2)) < 62 else None


def _ngram_keys(seq: np.ndarray, n: int, radix: int | None) -> np.ndarray:
    """One exact key per n-gram of ``seq`` (``len(seq) - n + 1`` of them, 0 if too short): its
    ids as a base-``radix`` integer, or (``radix=None``) the raw bytes of its n ids."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(seq) < n:
        return np.zeros(0, dtype=np.int64 if radix else np.dtype((np.void, 8 * n)))
    grams = np.lib.stride_tricks.sliding_window_view(seq, n)  # [M, n]
    if radix is None:
        return np.ascontiguousarray(grams).view(np.dtype((np.void, grams.itemsize * n))).ravel()
    keys = np.zeros(len(grams), dtype=np.int64)
    for j in range(n):
        keys = keys * radix + grams[:, j]
    return keys


def _entropy_of(seq: np.ndarray) -> float:
    if seq.size == 0:
        return math.nan
    counts = np.unique(seq, return_counts=True)[1]
    p = counts / seq.size
    return float(-np.sum(p * np.log(p)))


def unigram_entropy(
    samples: Samples,
    *,
    lengths: np.ndarray | Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    eos_id: int | None = None,
    unit: str = "char",
    base: float = math.e,
) -> np.ndarray:
    """Per-sample entropy ``-sum_v p_v log p_v`` of each sample's empirical unit distribution,
    float64 ``[N]``, in nats (``base=2`` for bits); NaN for an empty sample."""
    seqs = sequences(samples, lengths=lengths, mask=mask, eos_id=eos_id, unit=unit)
    h = np.array([_entropy_of(s) for s in seqs], dtype=np.float64)
    return h / math.log(base)


def distinct_n(
    samples: Samples,
    n: int,
    *,
    lengths: np.ndarray | Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    eos_id: int | None = None,
    unit: str = "char",
) -> np.ndarray:
    """Per-sample ``#unique n-grams / #n-grams``, float64 ``[N]``; NaN when a sample has fewer
    than ``n`` units."""
    seqs = sequences(samples, lengths=lengths, mask=mask, eos_id=eos_id, unit=unit)
    out = np.full(len(seqs), math.nan)
    radix = _radix(seqs, n)
    for i, s in enumerate(seqs):
        keys = _ngram_keys(s, n, radix)
        if keys.size:
            out[i] = len(np.unique(keys)) / keys.size
    return out


def corpus_distinct_n(
    samples: Samples,
    n: int,
    *,
    lengths: np.ndarray | Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    eos_id: int | None = None,
    unit: str = "char",
) -> float:
    """``#unique n-grams over the set / #n-gram occurrences over the set`` (n-grams never cross
    sample boundaries); NaN when no sample has ``n`` units."""
    seqs = sequences(samples, lengths=lengths, mask=mask, eos_id=eos_id, unit=unit)
    radix = _radix(seqs, n)
    keys = [_ngram_keys(s, n, radix) for s in seqs]
    total = sum(k.size for k in keys)
    if total == 0:
        return math.nan
    return len(np.unique(np.concatenate(keys))) / total


def repetition_rate(
    samples: Samples,
    n: int = 4,
    *,
    lengths: np.ndarray | Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    eos_id: int | None = None,
    unit: str = "char",
) -> np.ndarray:
    """Per-sample fraction of n-gram occurrences repeating an earlier one, ``1 - distinct_n``,
    float64 ``[N]``; NaN when a sample has fewer than ``n`` units."""
    return 1.0 - distinct_n(samples, n, lengths=lengths, mask=mask, eos_id=eos_id, unit=unit)


def real_words(texts: Sequence[str], vocabulary: Collection[str]) -> dict[str, float]:
    """``real_word_fraction`` = sum_s real_s / sum_s words_s over the decoded samples ``texts``
    (NaN without a word), its standard error ``real_word_fraction_se`` (ratio estimator,
    ``judge.ratio_se``) and ``num_words``."""
    from discrete_diffusion.data.words import real_word_counts
    from discrete_diffusion.evaluation.judge import ratio_se

    real, total = real_word_counts(texts, vocabulary)
    n = int(total.sum())
    return {"real_word_fraction": float(real.sum() / n) if n else math.nan,
            "real_word_fraction_se": ratio_se(real, total) if n else math.nan,
            "num_words": float(n)}


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error over the non-NaN values (NaN when there are too few)."""
    v = values[~np.isnan(values)]
    mean = float(v.mean()) if v.size else math.nan
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return mean, se


def summarize(
    samples: Samples,
    *,
    lengths: np.ndarray | Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    eos_id: int | None = None,
    unit: str = "char",
    distinct: Sequence[int] = (1, 2, 3),
    repetition: int = 4,
) -> dict[str, float]:
    """Means over samples of the per-sample statistics, as floats:

    ``unigram_entropy`` (nats) with ``unigram_entropy_se`` (std / sqrt(N)) and
    ``unigram_entropy_bits``; ``distinct_<n>`` (mean per sample) and ``corpus_distinct_<n>`` for
    each n in ``distinct``; ``repetition_<repetition>``; ``num_samples``, ``mean_length`` (valid
    units per sample), ``num_empty`` (samples without a unit, left out of the entropy mean).
    """
    seqs = sequences(samples, lengths=lengths, mask=mask, eos_id=eos_id, unit=unit)
    h, h_se = _mean_se(unigram_entropy(seqs))
    out: dict[str, float] = {
        "unigram_entropy": h,
        "unigram_entropy_se": h_se,
        "unigram_entropy_bits": h / LN2,
    }
    for n in distinct:
        out[f"distinct_{n}"] = _mean_se(distinct_n(seqs, n))[0]
        out[f"corpus_distinct_{n}"] = corpus_distinct_n(seqs, n)
    out[f"repetition_{repetition}"] = _mean_se(repetition_rate(seqs, repetition))[0]
    sizes = np.array([len(s) for s in seqs], dtype=np.float64)
    out["num_samples"] = float(len(seqs))
    out["mean_length"] = float(sizes.mean()) if len(seqs) else math.nan
    out["num_empty"] = float(np.sum(sizes == 0))
    return out
