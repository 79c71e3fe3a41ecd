"""data.words: the words of a text, a corpus's vocabulary, real-word counts; the bundle's
vocabulary of the training split."""

import json

import ml_collections
import numpy as np
import pytest

from discrete_diffusion import data as dd
from discrete_diffusion.data import words


def test_words_strip_outer_punctuation_and_lower_case():
    assert words.words("  Macbeth! macbeth,\n'Tis -- o'er the\tSEA?  ") == [
        "macbeth", "macbeth", "tis", "o'er", "the", "sea"]
    assert words.words("") == [] and words.words("-- ?! ...") == []


def test_vocabulary_and_real_word_counts_by_hand():
    vocab = words.vocabulary(["The king is dead.", "Long live the King!"])
    assert vocab == {"the", "king", "is", "dead", "long", "live"}
    real, total = words.real_word_counts(["the kinq is DEAD", "", "xx yy", "live!"], vocab)
    np.testing.assert_array_equal(real, [3, 0, 0, 1])
    np.testing.assert_array_equal(total, [4, 0, 2, 1])
    with pytest.raises(TypeError, match="not a single string"):
        words.real_word_counts("the king", vocab)


def test_text_bundles_carry_the_training_splits_vocabulary(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    train = [f"alpha beta {i}. gamma" for i in range(19)]
    for i, t in enumerate(train):
        (folder / f"{i:03d}.txt").write_text(t)
    (folder / "z.jsonl").write_text(json.dumps({"text": "heldout words only"}))
    config = ml_collections.ConfigDict({"data": dd.default_data_config(),
                                        "training": {"batch_size": 2}})
    config.data.update(name="local", data_dir=str(folder), seq_len=8, num_threads=1,
                       eval_fraction=0.05)
    bundle = dd.get_data(config, process_index=0, process_count=1)
    vocab = bundle.info["word_vocabulary"]()
    assert {"alpha", "beta", "gamma", "0", "17"} <= vocab
    assert not vocab & {"heldout", "words", "only"}  # the validation split is not in it
    assert bundle.info["word_vocabulary"]() is vocab  # built once


def test_real_word_line_reads_samples_against_heldout_text():
    from types import SimpleNamespace

    from discrete_diffusion.data.tokenizers import CharTokenizer

    tok = CharTokenizer.from_texts(["the king is dead xq"])
    held = ["the king", "is deax ", "the dead"]  # 2 sequences are read: 3 of 4 words real
    batches = [{"tokens": np.array([tok.encode(held[0]), tok.encode(held[1])])},
               {"tokens": np.array([tok.encode(held[2])])}]
    data = SimpleNamespace(info={"word_vocabulary": lambda: frozenset({"the", "king", "is",
                                                                        "dead"})},
                           tokenizer=tok, eval_batches=lambda: iter(batches))
    assert words.heldout_fraction(data, data.info["word_vocabulary"](), num_sequences=2) == 0.75
    line = words.real_word_line(data, ["the kinq", "dead dead"])
    assert line == "real words: 75.0% of 4 (held-out text: 75.0%)"
    assert words.real_word_line(SimpleNamespace(info={}), ["the"]) is None
