"""grain pipelines: determinism, checkpoint/resume, per-process sharding, eval passes."""

import itertools

import grain
import numpy as np
import pytest

from discrete_diffusion.data import pipeline

N, L = 50, 3


def _examples(n=N):
    tokens = np.arange(n * L, dtype=np.int32).reshape(n, L)
    return grain.MapDataset.source(
        pipeline.ArrayExamples({"tokens": tokens, "label": np.arange(n, dtype=np.int32)})
    )


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_train_batches_shapes_and_determinism():
    a = _take(pipeline.train_iterator(_examples(), global_batch_size=8, seed=3), 20)
    b = _take(pipeline.train_iterator(_examples(), global_batch_size=8, seed=3), 20)
    c = _take(pipeline.train_iterator(_examples(), global_batch_size=8, seed=4), 20)
    assert a[0]["tokens"].shape == (8, L) and a[0]["tokens"].dtype == np.int32
    assert a[0]["label"].shape == (8,)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["tokens"], y["tokens"])
    assert any(not np.array_equal(x["label"], y["label"]) for x, y in zip(a, c, strict=True))
    # Rows stay aligned across fields.
    np.testing.assert_array_equal(a[0]["tokens"][:, 0], a[0]["label"] * L)


def test_each_epoch_is_a_fresh_permutation():
    it = pipeline.train_iterator(_examples(40), global_batch_size=8, seed=0)
    labels = np.concatenate([b["label"] for b in _take(it, 10)])  # exactly two epochs
    first, second = labels[:40], labels[40:]
    assert sorted(first) == list(range(40)) and sorted(second) == list(range(40))
    assert not np.array_equal(first, second)


def test_checkpoint_resume_is_exact():
    it = pipeline.train_iterator(_examples(), global_batch_size=8, seed=1, num_threads=2)
    _take(it, 9)
    state = it.get_state()
    expected = _take(it, 12)  # crosses an epoch boundary
    fresh = pipeline.train_iterator(_examples(), global_batch_size=8, seed=1, num_threads=2)
    fresh.set_state(state)
    for x, y in zip(expected, _take(fresh, 12), strict=True):
        np.testing.assert_array_equal(x["tokens"], y["tokens"])


@pytest.mark.parametrize("count", [2, 4])
def test_process_shards_form_the_global_batch(count):
    full = _take(pipeline.train_iterator(_examples(), global_batch_size=8, seed=5), 15)
    shards = [
        _take(
            pipeline.train_iterator(
                _examples(), global_batch_size=8, seed=5, process_index=p, process_count=count
            ),
            15,
        )
        for p in range(count)
    ]
    for k in range(15):
        parts = [shards[p][k]["label"] for p in range(count)]
        assert all(len(x) == 8 // count for x in parts)
        np.testing.assert_array_equal(np.concatenate(parts), full[k]["label"])
        assert not set(parts[0]) & set(parts[1])


def test_batch_size_checks():
    with pytest.raises(ValueError, match="config.training.batch_size"):
        pipeline.train_iterator(_examples(), global_batch_size=6, seed=0, process_count=4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        pipeline.train_iterator(_examples(5), global_batch_size=8, seed=0)
    with pytest.raises(ValueError, match="positive"):
        pipeline.check_batch_size(0, 1)


def test_eval_pass_drops_last_partial_batch_and_is_sharded():
    batches = list(pipeline.eval_iterator(_examples(), global_batch_size=8))
    assert len(batches) == 6  # 50 // 8, the last 2 examples dropped
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), np.arange(48))
    assert list(pipeline.eval_iterator(_examples(), global_batch_size=8)) != []  # re-iterable
    capped = list(pipeline.eval_iterator(_examples(), global_batch_size=8, max_batches=2))
    assert len(capped) == 2
    shards = [
        list(
            pipeline.eval_iterator(
                _examples(), global_batch_size=8, process_index=p, process_count=2
            )
        )
        for p in range(2)
    ]
    for k, b in enumerate(batches):
        np.testing.assert_array_equal(
            np.concatenate([shards[0][k]["label"], shards[1][k]["label"]]), b["label"]
        )


def test_eval_pass_padded():
    batches = list(pipeline.eval_iterator(_examples(), global_batch_size=8, pad_last=True))
    assert len(batches) == 7
    valid = np.concatenate([b["valid"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert valid.sum() == N and not valid[N:].any()
    np.testing.assert_array_equal(labels[valid], np.arange(N))
    assert pipeline.num_eval_batches(50, 8, pad_last=True, max_batches=None) == 7
    assert pipeline.num_eval_batches(50, 8, pad_last=False, max_batches=3) == 3


def test_array_examples_checks_lengths():
    with pytest.raises(ValueError):
        pipeline.ArrayExamples({"a": np.zeros(3), "b": np.zeros(4)})
    ex = pipeline.ArrayExamples({"a": np.arange(3)})
    assert len(ex) == 3 and ex[2] == {"a": 2}
    assert list(itertools.islice(iter(grain.MapDataset.source(ex)), 2)) == [{"a": 0}, {"a": 1}]


def test_batches_with_out_of_range_ids_are_refused_on_the_host():
    # N * L = 150 token ids 0..149; with K = 100 some batch holds an id >= K.
    it = pipeline.train_iterator(_examples(), global_batch_size=50, seed=0, num_threads=1,
                                 num_classes=100)
    with pytest.raises(ValueError, match=r"training batch 'tokens': ids must lie in \[0, 100\)"):
        next(it)
    with pytest.raises(ValueError, match=r"evaluation batch 'label': ids must lie in \[0, 10\)"):
        next(pipeline.eval_iterator(_examples(), global_batch_size=50, num_threads=1,
                                    num_classes=150, num_labels=10))
    ok = pipeline.train_iterator(_examples(), global_batch_size=10, seed=0, num_threads=1,
                                 num_classes=150, num_labels=N)
    assert next(ok)["tokens"].shape == (10, L)
