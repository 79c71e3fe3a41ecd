"""A small in-process memo for work done on a whole text corpus: its tokenization and its word
vocabulary.

    key = ("encode_corpus", tokenizer.fingerprint, tokenizers.corpus_fingerprint(texts))
    docs = TEXT_MEMO.get_or_compute(key, lambda: encode_documents(...), size=num_tokens)

One process builds the same corpus's data more than once: the training loop, `--mode=eval` and
`--mode=sample` each build their `DataBundle`, and a Colab session or a test suite builds many.
Encoding the Shakespeare corpus with a BPE model takes about a second and its word vocabulary
another, each time. Entries are keyed by the *content* of the texts
(`tokenizers.corpus_fingerprint`, SHA-256 over the texts and their lengths), so a file that
changed on disk gives a new key, never a stale answer. The memo holds at most `max_entries`
entries and `max_items` items (tokens, words) in all; the least recently used go first. Arrays
it keeps are made read-only, so a caller that writes into one fails loudly instead of changing
what the next caller gets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _read_only(value: Any) -> Any:
    """Marks the numpy arrays of a value (an array or a list/tuple of them) read-only."""
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _read_only(v)
    return value


class TextMemo:
    """Least-recently-used memo bounded by entries and by items (tokens, words)."""

    def __init__(self, max_entries: int = 8, max_items: int = 1 << 26):
        self.max_entries, self.max_items = max_entries, max_items
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.hits = self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], T],
                       size: Callable[[T], int]) -> T:
        """The value stored under `key`, else `compute()` (stored when `size(value)` fits)."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key][0]
        self.misses += 1
        value = _read_only(compute())
        n = int(size(value))
        if n <= self.max_items:
            self._entries[key] = (value, n)
            while (len(self._entries) > self.max_entries
                   or sum(s for _, s in self._entries.values()) > self.max_items):
                self._entries.popitem(last=False)
        return value


TEXT_MEMO = TextMemo()
