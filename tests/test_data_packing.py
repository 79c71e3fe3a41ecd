"""Packing ("wrap") and padding, eager and lazy."""

import numpy as np
import pytest

from discrete_diffusion.data import packing

DOCS = [np.arange(10, 10 + n, dtype=np.int32) for n in (5, 1, 7, 3, 9, 2)]


def test_pack_with_and_without_specials():
    stream = np.concatenate([np.concatenate([[1], d, [2]]) for d in DOCS])
    blocks = packing.pack(DOCS, 4, bos_id=1, eos_id=2)
    n = len(stream) // 4
    np.testing.assert_array_equal(blocks, stream[: n * 4].reshape(n, 4))
    assert blocks.dtype == np.int32
    plain = packing.pack(DOCS, 5)
    np.testing.assert_array_equal(plain.ravel(), np.concatenate(DOCS)[: plain.size])
    only_eos = packing.pack(DOCS, 3, eos_id=2)
    assert only_eos.ravel()[5] == 2 and only_eos.ravel()[0] == 10


def test_pad_truncates_and_masks():
    tokens, mask = packing.pad(DOCS, 6, pad_id=0, bos_id=1, eos_id=2)
    assert tokens.shape == mask.shape == (len(DOCS), 6) and mask.dtype == bool
    np.testing.assert_array_equal(tokens[1], [1, 10, 2, 0, 0, 0])
    np.testing.assert_array_equal(mask[1], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(tokens[4], [1, 10, 11, 12, 13, 14])  # truncated, EOS lost
    assert mask[4].all()
    for m, d in zip(mask, DOCS, strict=True):
        assert m.sum() == min(len(d) + 2, 6)


@pytest.mark.parametrize("seq_len", [1, 3, 8, 16])
@pytest.mark.parametrize("specials", [(None, None), (1, 2), (None, 2)])
def test_lazy_pack_equals_eager(seq_len, specials):
    bos, eos = specials
    eager = packing.pack(DOCS, seq_len, bos_id=bos, eos_id=eos)
    lazy = packing.PackedDocuments(
        DOCS.__getitem__, np.array([len(d) for d in DOCS]), seq_len, bos_id=bos, eos_id=eos
    )
    assert len(lazy) == len(eager)
    np.testing.assert_array_equal(np.stack([lazy[j] for j in range(len(lazy))]), eager)
    with pytest.raises(IndexError):
        lazy[len(lazy)]


def test_lazy_pad_equals_eager():
    tokens, mask = packing.pad(DOCS, 7, pad_id=3, eos_id=2)
    lazy = packing.PaddedDocuments(DOCS.__getitem__, len(DOCS), 7, pad_id=3, eos_id=2)
    for i in range(len(DOCS)):
        t, m = lazy[i]
        np.testing.assert_array_equal(t, tokens[i])
        np.testing.assert_array_equal(m, mask[i])


def test_empty_and_bad():
    assert packing.pack([], 4).shape == (0, 4)
    with pytest.raises(ValueError):
        packing.pack(DOCS, 0)
