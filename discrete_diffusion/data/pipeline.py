"""grain pipelines: a checkpointable infinite train iterator and finite eval passes.

Examples are dicts of numpy arrays (``{'tokens': int32 [L]}``, plus ``'label'`` or ``'mask'``);
batches stack them along a new leading axis.

Per-host sharding: global batch ``k`` is the examples ``k*G .. (k+1)*G - 1`` of one seeded
stream (shuffle, then repeat with a fresh shuffle each epoch). Process ``p`` of ``P`` reads only
its ``B = G / P`` examples ``k*G + p*B .. k*G + (p+1)*B - 1`` of it: batching the stream by B and
keeping every P-th batch starting at ``p``. Concatenating the processes' batches in process
order therefore gives exactly the single-process global batch.

The train iterator (``TrainIterator``, over a grain ``DatasetIterator``): ``get_state()`` returns
a small dict to store with a checkpoint and ``set_state(state)`` resumes exactly where it was,
counted in examples, so a change of the global batch size on resume keeps the data position.

Eval: one deterministic pass over the validation split in order (no shuffle), sharded the same
way, optionally capped at ``max_batches``. The last partial global batch is dropped by default;
with ``pad_last=True`` it is filled with copies of example 0 and every eval batch then carries
``'valid'`` (bool ``[B]``, False on the filler rows), so metrics can be weighted exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import grain
import numpy as np

from discrete_diffusion import checks

Batch = dict[str, np.ndarray]


class ArrayExamples:
    """Random-access examples over aligned arrays: ``self[i] = {name: array[i]}``."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        """All arrays must share their leading dimension."""
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays differ in length: {sizes}")
        self._arrays = dict(arrays)
        self._n = next(iter(sizes.values()))

    def __len__(self) -> int:
        """Number of examples."""
        return self._n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """Example ``i``."""
        return {k: v[i] for k, v in self._arrays.items()}


def check_batch_size(global_batch_size: int, process_count: int) -> int:
    """The per-process batch size; ValueError unless ``process_count`` divides the batch."""
    if global_batch_size < 1:
        raise ValueError(
            f"config.training.batch_size must be a positive integer, got {global_batch_size}"
        )
    if global_batch_size % process_count:
        raise ValueError(
            f"config.training.batch_size={global_batch_size} must be divisible by the number of "
            f"processes ({process_count})"
        )
    return global_batch_size // process_count


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
    """grain read options (threads fetching examples, batches buffered ahead)."""
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)


def _checked(
    ds: grain.MapDataset, num_classes: int | None, num_labels: int | None, what: str
) -> grain.MapDataset:
    """``ds`` whose batches are checked on the host: token ids in ``[0, num_classes)`` (and
    labels in ``[0, num_labels)``); ValueError naming the batch otherwise. None: no check."""
    if num_classes is None:
        return ds
    return ds.map(
        functools.partial(checks.check_batch, num_classes=num_classes, num_labels=num_labels,
                          what=what)
    )


def train_iterator(
    examples: grain.MapDataset,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    prefetch: int = 8,
    num_classes: int | None = None,
    num_labels: int | None = None,
) -> TrainIterator:
    """Infinite iterator of this process's share of each shuffled global batch.

    ``examples``: a ``grain.MapDataset`` of example dicts. Raises ValueError when it holds fewer
    examples than one global batch. With ``num_classes`` (K) every batch is checked on the host
    before it is returned (``checks.check_batch``): a token id outside ``[0, K)`` (or a label
    outside ``[0, num_labels)``) raises ValueError, instead of reaching the jitted train step.
    """
    local = check_batch_size(global_batch_size, process_count)
    if len(examples) < global_batch_size:
        raise ValueError(
            f"the training split has {len(examples)} examples, fewer than one batch "
            f"(config.training.batch_size={global_batch_size}); lower the batch size or seq_len, "
            "or add data"
        )
    stream = examples.shuffle(seed=int(seed) % 2**32).repeat()

    def batches(start: int) -> grain.DatasetIterator:
        ds = stream[start:].batch(local, drop_remainder=True)[process_index::process_count]
        ds = _checked(ds, num_classes, num_labels, "training batch")
        return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))

    return TrainIterator(batches, global_batch_size)


class TrainIterator:
    """The train iterator: this process's share of global batch after global batch of the
    shuffled, repeated example stream, with a checkpointable position counted in examples.

    ``get_state()`` = ``{'example': E, 'next_index': k, 'global_batch_size': G}``: the next
    global batch starts at example ``E + k * G`` of the stream. ``set_state`` resumes there
    whatever the batch size was when the state was taken, so a run resumed with another
    ``config.training.batch_size`` neither skips nor repeats examples. A state of grain's own
    iterator (``{'next_index': k}`` alone, written before this class) counts ``k`` batches of the
    current size.
    """

    def __init__(self, batches: Any, global_batch_size: int):
        """``batches(start)``: a grain iterator of the batches from example ``start`` on."""
        self._batches, self._g = batches, int(global_batch_size)
        self._start = 0
        self._it = batches(0)

    def __iter__(self) -> TrainIterator:
        return self

    def __next__(self) -> Batch:
        return next(self._it)

    def get_state(self) -> dict[str, int]:
        """The position: ``{'example', 'next_index', 'global_batch_size'}`` (see the class doc)."""
        k = int(self._it.get_state()["next_index"])
        return {"example": self._start, "next_index": k, "global_batch_size": self._g}

    def examples_consumed(self, state: dict[str, Any] | None = None) -> int:
        """Examples of the stream before the next global batch (of `state`, default now)."""
        s = self.get_state() if state is None else state
        return int(s.get("example", 0)) + int(s["next_index"]) * int(s.get("global_batch_size", self._g))

    def set_state(self, state: dict[str, Any]) -> None:
        """Resumes at the position of ``state`` (taken with any batch size)."""
        start = self.examples_consumed(state)
        self._start, self._it = start, self._batches(start)


def num_eval_batches(
    num_examples: int, global_batch_size: int, *, pad_last: bool, max_batches: int | None
) -> int:
    """How many global batches one eval pass yields."""
    n = (math.ceil if pad_last else math.floor)(num_examples / global_batch_size)
    return n if max_batches is None else min(n, max_batches)


def _with_valid(examples: grain.MapDataset, total: int) -> grain.MapDataset:
    """Extends ``examples`` to ``total`` items with filler copies of item 0, adding ``'valid'``."""
    n = len(examples)

    def fetch(i: int) -> dict[str, Any]:
        ex = dict(examples[i if i < n else 0])
        ex["valid"] = np.bool_(i < n)
        return ex

    return grain.MapDataset.range(total).map(fetch)


def eval_iterator(
    examples: grain.MapDataset,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    max_batches: int | None = None,
    pad_last: bool = False,
    num_threads: int = 4,
    prefetch: int = 8,
    num_classes: int | None = None,
    num_labels: int | None = None,
) -> Iterator[Batch]:
    """One in-order pass over ``examples`` in this process's share of each global batch.

    ``num_classes``/``num_labels``: check every batch on the host, as ``train_iterator`` does.
    """
    local = check_batch_size(global_batch_size, process_count)
    n_batches = num_eval_batches(
        len(examples), global_batch_size, pad_last=pad_last, max_batches=max_batches
    )
    total = n_batches * global_batch_size
    ds = _with_valid(examples, total) if pad_last else examples[:total]
    ds = ds.batch(local, drop_remainder=True)[process_index::process_count]
    ds = _checked(ds, num_classes, num_labels, "evaluation batch")
    return iter(ds.to_iter_dataset(_read_options(num_threads, prefetch)))
