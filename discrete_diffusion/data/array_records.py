"""On-disk format of prepared (pre-tokenized) text datasets: ArrayRecord files of documents.

A prepared dataset is one folder::

    <dir>/metadata.json                   format, vocab size, special ids, tokenizer, splits
    <dir>/<split>-00000.array_record ...  one record per document: its token ids as raw
                                          little-endian ``dtype`` bytes (no specials added)
    <dir>/<split>-lengths.npy             int64 length of every document (for lazy packing)
    <dir>/tokenizer.*                     what ``load_tokenizer`` needs (if anything)

``dtype`` is ``uint16`` when the vocabulary fits, else ``int32``. ``metadata.json`` is written
last, so a folder without it is an unfinished preparation. Write with ``write_tokenized_dataset``
(used by ``launch/prepare_*.py`` and by the tests, from any iterable of strings or id lists);
read with ``TokenizedDataset``. BOS/EOS are inserted at packing time (see ``packing``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from discrete_diffusion.data import tokenizers as tok_lib

FORMAT = "discrete_diffusion.tokenized_documents"
VERSION = 1
METADATA = "metadata.json"


def storage_dtype(vocab_size: int) -> np.dtype:
    """Smallest supported little-endian dtype holding ids ``0 .. vocab_size-1``."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _tokenized(
    docs: Iterable[str | Sequence[int] | np.ndarray], tokenizer: tok_lib.Tokenizer
) -> Iterator[np.ndarray]:
    """Token arrays of ``docs``: strings are encoded (in chunks), id sequences pass through."""
    for chunk in _chunks(docs, 1024):
        texts = [d for d in chunk if isinstance(d, str)]
        encoded = iter(tok_lib.encode_documents(tokenizer, texts)) if texts else iter(())
        for d in chunk:
            yield next(encoded) if isinstance(d, str) else np.asarray(d, np.int64)


def _write_split(
    directory: Path,
    split: str,
    docs: Iterable[np.ndarray],
    *,
    vocab_size: int,
    docs_per_shard: int,
) -> dict[str, Any]:
    """Writes one split's shards and lengths; returns its metadata entry."""
    from array_record.python import array_record_module

    dtype = storage_dtype(vocab_size)
    files: list[str] = []
    lengths: list[int] = []
    max_id = -1
    writer = None
    for i, doc in enumerate(docs):
        doc = np.asarray(doc)
        if doc.size and (doc.min() < 0 or doc.max() >= vocab_size):
            raise ValueError(
                f"{split} document {i} has token ids outside [0, {vocab_size}): "
                f"min {doc.min()}, max {doc.max()}"
            )
        if i % docs_per_shard == 0:
            if writer is not None:
                writer.close()
            files.append(f"{split}-{len(files):05d}.array_record")
            writer = array_record_module.ArrayRecordWriter(
                str(directory / files[-1]), "group_size:1"
            )
        writer.write(doc.astype(dtype).tobytes())
        lengths.append(int(doc.size))
        if doc.size:
            max_id = max(max_id, int(doc.max()))
    if writer is not None:
        writer.close()
    np.save(directory / f"{split}-lengths.npy", np.asarray(lengths, np.int64))
    return {
        "files": files,
        "lengths_file": f"{split}-lengths.npy",
        "num_documents": len(lengths),
        "num_tokens": int(sum(lengths)),
        "max_token_id": max_id,
    }


def write_tokenized_dataset(
    directory: str | os.PathLike,
    splits: Mapping[str, Iterable[str | Sequence[int] | np.ndarray]],
    tokenizer: tok_lib.Tokenizer,
    *,
    docs_per_shard: int = 500_000,
    extra_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenizes (where needed) and writes ``splits`` in the prepared-dataset format.

    Each split is an iterable of documents: strings (encoded with ``tokenizer``, no specials)
    or sequences of ids already in ``0 .. K-1``. Returns the metadata written.
    """
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METADATA).unlink(missing_ok=True)
    K = tokenizer.vocab_size
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": storage_dtype(K).str,
        "vocab_size": K,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "pad_id": tokenizer.pad_id,
        "tokenizer": tok_lib.save_tokenizer(tokenizer, directory),
        "splits": {},
        **dict(extra_metadata or {}),
    }
    for split, docs in splits.items():
        meta["splits"][split] = _write_split(
            directory,
            split,
            _tokenized(docs, tokenizer),
            vocab_size=K,
            docs_per_shard=docs_per_shard,
        )
    tmp = directory / (METADATA + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, directory / METADATA)
    return meta


class DocumentStore:
    """Random access to one split's documents: ``store[i]`` is an int32 array of ids."""

    def __init__(self, directory: Path, split: str, info: Mapping[str, Any], meta: Mapping):
        """Opens the split's shards (``info`` is its metadata entry)."""
        import grain

        self.split = split
        self._dtype = np.dtype(meta["dtype"])
        self._vocab_size = int(meta["vocab_size"])
        self.lengths = np.load(directory / info["lengths_file"])
        paths = [str(directory / f) for f in info["files"]]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"prepared dataset {directory} lacks {missing[:3]}")
        self._paths = paths
        try:
            self._source = grain.sources.ArrayRecordDataSource(paths) if paths else []
        except Exception as err:  # noqa: BLE001 - whatever array_record raises for a bad shard
            raise DataFileError(f"{self._locate(-1)}: cannot be opened ({type(err).__name__}: "
                                f"{' '.join(str(err).split())[:200]}); the file is truncated or "
                                "damaged: prepare the dataset again") from None
        if len(self._source) != len(self.lengths):
            raise ValueError(
                f"{directory}: split {split!r} has {len(self._source)} records but "
                f"{len(self.lengths)} lengths; prepare it again"
            )

    def __len__(self) -> int:
        """Number of documents."""
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        """Document ``i`` as int32 ids; ids ``>= vocab_size`` raise ValueError; a shard that
        cannot be read (truncated or damaged after the dataset was opened) raises
        `DataFileError` naming the file."""
        try:
            raw = self._source[i]
        except Exception as err:  # noqa: BLE001 - whatever array_record/grain raise
            raise DataFileError(f"{self._locate(int(i))}: cannot read document {i} of split "
                                f"{self.split!r} ({type(err).__name__}: "
                                f"{' '.join(str(err).split())[:200]}); the file is truncated or "
                                "damaged: prepare the dataset again") from None
        doc = np.frombuffer(raw, dtype=self._dtype).astype(np.int32)
        if doc.size and (doc.max() >= self._vocab_size or doc.min() < 0):
            raise ValueError(
                f"{self.split} document {i} has token ids outside [0, {self._vocab_size})"
            )
        return doc


    def _locate(self, i: int) -> str:
        """The first shard that cannot be read whole, else the one holding document ``i``."""
        from array_record.python import array_record_module

        start = 0
        for path in self._paths:
            try:
                reader = array_record_module.ArrayRecordReader(path)
                n = int(reader.num_records())
                reader.close()  # array_record reports some damage only here
            except Exception:  # noqa: BLE001 - this shard is the broken one
                return path
            if 0 <= i < start + n:
                return f"{path} (record {i - start})"
            start += n
        return f"one of {self._paths}"


class DataFileError(ValueError):
    """A prepared dataset's file that cannot be read; the message names it."""


class TokenizedDataset:
    """A prepared dataset folder (see the module docstring), validated when opened."""

    def __init__(self, directory: str | os.PathLike):
        """Reads and checks ``metadata.json``; FileNotFoundError when it is absent."""
        self.directory = Path(directory).expanduser()
        path = self.directory / METADATA
        if not path.exists():
            raise FileNotFoundError(f"no prepared dataset at {self.directory} (missing {path})")
        self.metadata = json.loads(path.read_text())
        if self.metadata.get("format") != FORMAT or self.metadata.get("version") != VERSION:
            raise ValueError(
                f"{path} is not a {FORMAT} v{VERSION} dataset "
                f"(format={self.metadata.get('format')!r}, version={self.metadata.get('version')})"
            )
        K = self.vocab_size
        for split, info in self.metadata["splits"].items():
            if info["max_token_id"] >= K:
                raise ValueError(
                    f"{path}: split {split!r} holds token id {info['max_token_id']} >= "
                    f"vocab_size {K}; the data and the tokenizer do not match"
                )

    @property
    def vocab_size(self) -> int:
        """Number K of clean classes."""
        return int(self.metadata["vocab_size"])

    @property
    def splits(self) -> list[str]:
        """Names of the splits present."""
        return list(self.metadata["splits"])

    def special_ids(self) -> dict[str, int | None]:
        """``{'bos_id', 'eos_id', 'pad_id'}`` as recorded at preparation."""
        return {k: self.metadata.get(k) for k in ("bos_id", "eos_id", "pad_id")}

    def documents(self, split: str) -> DocumentStore:
        """Random-access documents of ``split``."""
        if split not in self.metadata["splits"]:
            raise ValueError(f"{self.directory} has no split {split!r}; it has {self.splits}")
        return DocumentStore(self.directory, split, self.metadata["splits"][split], self.metadata)

    def tokenizer(self) -> tok_lib.Tokenizer:
        """The tokenizer used at preparation; integer ids if it cannot be loaded here."""
        try:
            return tok_lib.load_tokenizer(self.metadata["tokenizer"], self.directory)
        except ImportError as e:
            logging.warning("%s; decoding prepared data as integer ids", e)
            return tok_lib.IntegerTokenizer(self.vocab_size)
