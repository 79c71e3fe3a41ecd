"""`config.data.source='tfds'`: a TFDS text dataset read through its random-access data source.

TFDS 4.9+ serves a dataset prepared with `file_format='array_record'` (in a local folder or a
bucket, `config.data.data_dir`) as a random-access data source, `tfds.data_source(name, split)`,
without TensorFlow. Here each record's `config.data.text_field` is a document:

    documents   TextSource(split)[i] = record_i[text_field] decoded as UTF-8 (read on access)
    tokens      the run's tokenizer (char or sentencepiece, trained on the train split's text,
                as for a local corpus); one pass at start-up records each document's length
    examples    packing.PackedDocuments / PaddedDocuments over those documents, tokenized again
                on access (no token array is kept: memory is one int per document)
    batches     the same grain MapDataset -> checkpointable train iterator as every dataset

Nothing is ever downloaded (`download=False`): a dataset missing from data_dir is an error that
names it. The start-up pass reads every document once (twice for a character vocabulary or a
sentencepiece model not yet cached); for corpora of billions of tokens `discrete_diffusion.data.
prepare` writes pre-tokenized ArrayRecords once instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from discrete_diffusion.data import tokenizers as tok_lib


def open_split(name: str, split: str, data_dir: str | None) -> Any:
    """`tfds.data_source(name, split, data_dir, download=False)`; ValueError naming the dataset,
    split and folder when it cannot be opened (not prepared, not ArrayRecord, unknown split)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # tfds raises several kinds (AssertionError, ValueError, ...)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"config.data.tfds_name={name!r} split {split!r} cannot be read as a TFDS data source "
            f"from config.data.data_dir={data_dir!r} ({type(err).__name__}: {first}); it must be "
            "prepared there with file_format='array_record' (nothing is downloaded)"
        ) from None


class TextSource:
    """Random access to the documents of a TFDS split: `[i]` is record i's `field` as str."""

    def __init__(self, source: Any, field: str, what: str):
        self._source, self._field, self._what = source, field, what

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int) -> str:
        record = self._source[int(i)]
        if self._field not in record:
            raise ValueError(f"{self._what} record {i} has no feature config.data.text_field="
                             f"{self._field!r}; its features are {sorted(record)}")
        value = record[self._field]
        value = value.item() if isinstance(value, np.ndarray) else value
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    def texts(self) -> list[str]:
        """Every document, in order (the start-up pass)."""
        return [self[i] for i in range(len(self))]


class EncodedDocuments:
    """Documents of a `TextSource` tokenized on access; `lengths` [N] from one pass at start."""

    def __init__(self, texts: TextSource, tokenizer: tok_lib.Tokenizer):
        self._texts, self._tokenizer = texts, tokenizer
        self.lengths = np.array([len(tokenizer.encode(texts[i])) for i in range(len(texts))], np.int64)

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._tokenizer.encode(self._texts[i]), np.int32)
