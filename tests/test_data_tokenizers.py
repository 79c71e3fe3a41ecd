"""Tokenizers: round trips, mask rendering, saving, and the sentencepiece cache."""

import pickle

import numpy as np
import pytest

from discrete_diffusion.data import tokenizers as tl

CORPUS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n",
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n",
    "And by opposing end them. To die: to sleep;\n  No more; and by a sleep to say we end\n",
] * 20


def test_char_tokenizer_round_trip_and_order():
    tok = tl.CharTokenizer.from_texts(CORPUS)
    assert tok.chars == sorted(set("".join(CORPUS)))
    assert tok.vocab_size == len(tok.chars)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (None, None, None)
    text = CORPUS[0]
    ids = tok.encode(text)
    assert all(isinstance(i, int) for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(np.asarray(ids)) == text  # numpy input
    np.testing.assert_array_equal(tok.encode_array(text), ids)


def test_char_tokenizer_masks_unknown_and_save(tmp_path):
    tok = tl.CharTokenizer.from_texts(["abc"])
    assert tok.decode([0, 3, 2, 99]) == "a\u2588c\u2588"  # a mask is no character of the corpus
    assert tl.CharTokenizer(["_", "\u2588", "a"]).decode([0, 3]) == "_\u2591"  # the next one it lacks
    with pytest.raises(ValueError, match="not in the CharTokenizer vocabulary"):
        tok.encode("abz")
    tok.save(tmp_path / "chars.json")
    assert tl.CharTokenizer.load(tmp_path / "chars.json").chars == tok.chars
    spec = tl.save_tokenizer(tok, tmp_path / "d")
    assert tl.load_tokenizer(spec, tmp_path / "d").chars == tok.chars


def test_integer_tokenizer():
    tok = tl.IntegerTokenizer(5)
    assert tok.encode("0 4 2") == [0, 4, 2]
    assert tok.decode([0, 5, 4]) == "0 _ 4"
    with pytest.raises(ValueError):
        tok.encode("5")
    assert isinstance(tok, tl.Tokenizer)


def test_sentencepiece_round_trip_specials_and_mask(tmp_path):
    tok = tl.SentencePieceTokenizer.train_or_load(CORPUS, vocab_size=120, cache_dir=tmp_path)
    assert isinstance(tok, tl.Tokenizer)
    assert tok.vocab_size == 120
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 2, 3)
    text = "To sleep, perhaps to dream\n  and by a sleep\n\nthe end"
    ids = tok.encode(text)
    assert max(ids) < tok.vocab_size
    assert tok.decode(ids) == text  # identity normalisation: exact, newlines included
    assert tok.decode([tok.bos_id, *ids, tok.eos_id]) == text
    masked = tok.decode([*ids[:2], tok.vocab_size, *ids[2:4]])
    assert masked == tok.decode(ids[:2]) + "[MASK]" + tok.decode(ids[2:4])
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode(text) == ids


def test_sentencepiece_cache_loads_instead_of_training(tmp_path, monkeypatch):
    first = tl.SentencePieceTokenizer.train_or_load(CORPUS, vocab_size=100, cache_dir=tmp_path)
    files = list((tmp_path / "sentencepiece").glob("*.model"))
    assert len(files) == 1

    def boom(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(tl.SentencePieceTokenizer, "train", classmethod(boom))
    second = tl.SentencePieceTokenizer.train_or_load(CORPUS, vocab_size=100, cache_dir=tmp_path)
    assert second.encode(CORPUS[1]) == first.encode(CORPUS[1])
    # Another corpus or vocabulary size is another cache entry (and would train).
    with pytest.raises(AssertionError, match="retrained"):
        tl.SentencePieceTokenizer.train_or_load(CORPUS, vocab_size=101, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="retrained"):
        tl.SentencePieceTokenizer.train_or_load(CORPUS[:3], vocab_size=100, cache_dir=tmp_path)


def test_sentencepiece_vocab_too_large_is_value_error():
    with pytest.raises(ValueError, match=r"vocab_size=5000 is too large .*lower it to at most"):
        tl.SentencePieceTokenizer.train(["tiny corpus"], vocab_size=5000)


def test_sentencepiece_vocab_too_small_says_too_small():
    """60 distinct characters with vocab_size=20: the advice is to raise it (not 'too large')."""
    text = "".join(chr(0x4E00 + i) for i in range(60))
    with pytest.raises(ValueError, match=r"vocab_size=20 is too small .*raise config.data.vocab"):
        tl.SentencePieceTokenizer.train([text] * 3, vocab_size=20)


def test_fingerprint_depends_on_boundaries_and_settings():
    fp = tl.corpus_fingerprint
    assert fp(["ab", "c"]) != fp(["a", "bc"])
    assert fp(["ab"], {"v": 1}) != fp(["ab"], {"v": 2})
    assert fp(["ab"], {"v": 1}) == fp(["ab"], {"v": 1})


def test_encode_documents_uses_fast_paths():
    tok = tl.CharTokenizer.from_texts(["hello world"])
    docs = tl.encode_documents(tok, ["hello", "world"])
    assert [d.dtype for d in docs] == [np.int32, np.int32]
    assert tok.decode(docs[1]) == "world"
