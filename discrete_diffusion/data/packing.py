"""Turning tokenized documents into fixed-length rows: packing ("wrap") or padding.

* pack: each document becomes ``[BOS] + doc + [EOS]`` (either special only when its id is not
  None), the results are concatenated in order and cut into consecutive blocks of ``seq_len``;
  the last incomplete block is dropped. This is the papers' "wrap" setting. Character-level
  corpora usually pack with no BOS/EOS at all.
* pad: one document per row, ``[BOS] + doc + [EOS]`` truncated to ``seq_len`` (a document too long
  for the row loses its tail, EOS included) then filled with ``pad_id``; ``mask`` is True on the
  real tokens.

``pack``/``pad`` work on in-memory lists; ``PackedDocuments``/``PaddedDocuments`` give the same
rows lazily, by index, over a random-access document store (used for large prepared datasets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def add_specials(doc: np.ndarray, bos_id: int | None, eos_id: int | None) -> np.ndarray:
    """``[bos] + doc + [eos]`` as int32, skipping a special whose id is None."""
    parts = []
    if bos_id is not None:
        parts.append(np.array([bos_id], np.int32))
    parts.append(np.asarray(doc, np.int32))
    if eos_id is not None:
        parts.append(np.array([eos_id], np.int32))
    return np.concatenate(parts)


def num_special(bos_id: int | None, eos_id: int | None) -> int:
    """How many special tokens ``add_specials`` adds per document."""
    return int(bos_id is not None) + int(eos_id is not None)


def pack(
    docs: Sequence[np.ndarray],
    seq_len: int,
    *,
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> np.ndarray:
    """Concatenates the documents (with specials) and cuts blocks: int32 ``[N, seq_len]``."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if not docs:
        return np.zeros((0, seq_len), np.int32)
    stream = np.concatenate([add_specials(d, bos_id, eos_id) for d in docs])
    n = len(stream) // seq_len
    return stream[: n * seq_len].reshape(n, seq_len)


def pad_row(
    doc: np.ndarray,
    seq_len: int,
    *,
    pad_id: int,
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One padded row: (int32 tokens ``[seq_len]``, bool mask ``[seq_len]``)."""
    row = add_specials(doc, bos_id, eos_id)[:seq_len]
    tokens = np.full(seq_len, pad_id, np.int32)
    tokens[: len(row)] = row
    mask = np.zeros(seq_len, bool)
    mask[: len(row)] = True
    return tokens, mask


def pad(
    docs: Sequence[np.ndarray],
    seq_len: int,
    *,
    pad_id: int,
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One document per row: (int32 tokens ``[N, seq_len]``, bool mask ``[N, seq_len]``)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    tokens = np.full((len(docs), seq_len), pad_id, np.int32)
    mask = np.zeros((len(docs), seq_len), bool)
    for i, d in enumerate(docs):
        tokens[i], mask[i] = pad_row(d, seq_len, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)
    return tokens, mask


class PackedDocuments:
    """Lazy ``pack``: block ``j`` is assembled from the few documents it overlaps.

    ``get_doc(i)`` returns document ``i`` (without specials); ``lengths[i]`` is its length.
    """

    def __init__(
        self,
        get_doc: Callable[[int], np.ndarray],
        lengths: np.ndarray,
        seq_len: int,
        *,
        bos_id: int | None = None,
        eos_id: int | None = None,
    ):
        """See the class docstring; the total stream length comes from ``lengths`` alone."""
        self._get_doc = get_doc
        self._bos, self._eos = bos_id, eos_id
        self.seq_len = int(seq_len)
        sizes = np.asarray(lengths, np.int64) + num_special(bos_id, eos_id)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])  # stream offset of each document
        self._len = int(self._starts[-1] // self.seq_len)

    def __len__(self) -> int:
        """Number of complete blocks."""
        return self._len

    def __getitem__(self, j: int) -> np.ndarray:
        """Block ``j``: int32 ``[seq_len]``."""
        if not 0 <= j < self._len:
            raise IndexError(j)
        lo, hi = j * self.seq_len, (j + 1) * self.seq_len
        i = int(np.searchsorted(self._starts, lo, side="right")) - 1
        pieces, pos = [], lo
        while pos < hi:
            doc = add_specials(self._get_doc(i), self._bos, self._eos)
            start = pos - int(self._starts[i])
            take = doc[start : start + hi - pos]
            pieces.append(take)
            pos += len(take)
            i += 1
        return np.concatenate(pieces)


class PaddedDocuments:
    """Lazy ``pad``: row ``i`` is document ``i`` padded, returned as (tokens, mask)."""

    def __init__(
        self,
        get_doc: Callable[[int], np.ndarray],
        num_docs: int,
        seq_len: int,
        *,
        pad_id: int,
        bos_id: int | None = None,
        eos_id: int | None = None,
    ):
        """See the class docstring."""
        self._get_doc = get_doc
        self._n = int(num_docs)
        self.seq_len = int(seq_len)
        self._kw = {"pad_id": pad_id, "bos_id": bos_id, "eos_id": eos_id}

    def __len__(self) -> int:
        """Number of documents."""
        return self._n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(int32 tokens ``[seq_len]``, bool mask ``[seq_len]``) of document ``i``."""
        if not 0 <= i < self._n:
            raise IndexError(i)
        return pad_row(self._get_doc(i), self.seq_len, **self._kw)
