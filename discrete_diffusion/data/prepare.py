"""Helpers for the ``launch/prepare_*.py`` scripts: choose a tokenizer, encode in parallel, write.

Nothing here downloads data: the scripts fetch the raw text and hand iterables of strings to
``prepare_text_dataset``, which writes the ``array_records`` format read by ``get_data``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from discrete_diffusion.data import array_records
from discrete_diffusion.data import tokenizers as tok_lib

_WORKER_TOKENIZER: tok_lib.Tokenizer | None = None


def make_tokenizer(
    spec: str, sample_texts: Iterable[str] = (), *, vocab_size: int = 32768
) -> tok_lib.Tokenizer:
    """``'sentencepiece'``: BPE trained on ``sample_texts``; anything else: a Hugging Face name."""
    if spec == "sentencepiece":
        return tok_lib.SentencePieceTokenizer.train(list(sample_texts), vocab_size=vocab_size)
    return tok_lib.HuggingFaceTokenizer(spec)


def _init_worker(tokenizer: tok_lib.Tokenizer) -> None:
    """Pool initializer: keeps the tokenizer in a module global of the worker."""
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode_chunk(texts: list[str]) -> list[np.ndarray]:
    """Encodes a chunk of texts with the worker's tokenizer."""
    assert _WORKER_TOKENIZER is not None
    return tok_lib.encode_documents(_WORKER_TOKENIZER, texts)


def encode_parallel(
    tokenizer: tok_lib.Tokenizer,
    texts: Iterable[str],
    *,
    num_proc: int = 1,
    chunk_size: int = 1000,
) -> Iterator[np.ndarray]:
    """Token arrays of ``texts`` in order, encoded by ``num_proc`` worker processes."""
    it = iter(texts)
    chunks = iter(lambda: list(itertools.islice(it, chunk_size)), [])
    if num_proc <= 1:
        for chunk in chunks:
            yield from tok_lib.encode_documents(tokenizer, chunk)
        return
    # fork: workers inherit the tokenizer and skip re-importing the library (no JAX work has
    # run in the preparation scripts, so forking is safe); spawn where fork does not exist.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(
        num_proc, initializer=_init_worker, initargs=(tokenizer,)
    ) as pool:
        for encoded in pool.imap(_encode_chunk, chunks, chunksize=1):
            yield from encoded


def prepare_text_dataset(
    directory: str | os.PathLike,
    splits: Mapping[str, Iterable[str]],
    tokenizer: tok_lib.Tokenizer,
    *,
    num_proc: int = 1,
    extra_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Encodes every split with ``tokenizer`` and writes the prepared dataset to ``directory``."""
    encoded = {
        name: encode_parallel(tokenizer, texts, num_proc=num_proc) for name, texts in splits.items()
    }
    return array_records.write_tokenized_dataset(
        directory, encoded, tokenizer, extra_metadata=extra_metadata
    )
