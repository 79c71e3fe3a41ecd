"""config.data.source='tfds' (data/tfds_source.py): a tiny TFDS dataset built here with TFDS's own
builder (ArrayRecord, offline) reads into exactly the examples the in-memory text path packs,
through the same checkpointable iterator; a dataset that is not prepared is one error, never a
download."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from discrete_diffusion.data import bundle, get_data, packing
from discrete_diffusion.data import tokenizers as tok_lib

TRAIN = ["the cat sat", "a dog ran far away", "hello", "to be or not to be", "", "xyz"]
TEST = ["bye now", "see you"]


class DdTinyText(tfds.core.GeneratorBasedBuilder):
    """Two splits of short documents under the feature 'sentence'."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"sentence": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(TRAIN), "test": self._generate_examples(TEST)}

    def _generate_examples(self, texts):
        for i, text in enumerate(texts):
            yield i, {"sentence": text}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tfds"))
    DdTinyText(data_dir=path, file_format="array_record").download_and_prepare()
    return path


def _config(data_dir: str, **data) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict({"data": bundle.default_data_config(),
                                        "training": {"batch_size": 2}})
    fields = dict(name="lm1b", source="tfds", tfds_name="dd_tiny_text", data_dir=data_dir,
                  text_field="sentence", tokenizer="char", seq_len=5)
    config.data.update({**fields, **data})
    return config


def test_tfds_examples_are_the_in_memory_packing_of_the_same_text(data_dir):
    s = bundle._settings(_config(data_dir))
    splits = bundle._tfds_splits(s)
    source = tfds.data_source("dd_tiny_text", split="train", data_dir=data_dir, download=False)
    texts = [source[i]["sentence"].decode() for i in range(len(source))]  # TFDS's stored order
    assert sorted(texts) == sorted(TRAIN)
    tok = tok_lib.CharTokenizer.from_texts(TRAIN + TEST)
    assert splits.tokenizer.chars == tok.chars and splits.num_classes == tok.vocab_size
    expected = packing.pack([np.asarray(tok.encode(t), np.int32) for t in texts], 5)
    got = np.stack([splits.train[j]["tokens"] for j in range(len(splits.train))])
    np.testing.assert_array_equal(got, expected)
    assert splits.info["train_tokens"] == sum(map(len, TRAIN))
    valid = bundle._tfds_splits(bundle._settings(_config(data_dir, packing="pad", seq_len=8))).valid
    rows = [valid[i] for i in range(len(valid))]
    assert sorted(tok.decode(r["tokens"][r["mask"]].tolist()) for r in rows) == sorted(TEST)


def test_tfds_train_iterator_is_checkpointable(data_dir):
    data = get_data(_config(data_dir), process_index=0, process_count=1)
    it = data.train_iter
    next(it)
    state = it.get_state()
    ahead = [next(it)["tokens"] for _ in range(3)]
    it.set_state(state)
    np.testing.assert_array_equal(np.stack([next(it)["tokens"] for _ in range(3)]), np.stack(ahead))


@pytest.mark.parametrize("data, message", [
    ({"tfds_name": "dd_not_prepared"},
     r"config.data.tfds_name='dd_not_prepared' split 'train' cannot be read"),
    ({"tfds_eval_split": "validation"}, r"split 'validation' cannot be read .*Unknown split"),
    ({"text_field": "text"}, r"record 0 has no feature config.data.text_field='text'; its features are "
                             r"\['sentence'\]"),
    ({"name": "local"},
     r"config.data.source='tfds' applies to config.data.name in \['lm1b', 'openwebtext'\]"),
])
def test_tfds_errors_name_the_field(data_dir, data, message):
    with pytest.raises(ValueError, match=message):
        get_data(_config(data_dir, **data), process_index=0, process_count=1)
