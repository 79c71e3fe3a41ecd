"""get_data: every source end to end through the real pipeline, and every bad-config error."""

import json

import ml_collections
import numpy as np
import pytest

from discrete_diffusion import data as dd
from discrete_diffusion.data import array_records
from discrete_diffusion.data import tokenizers as tl

TEXTS = [
    f"Doc {i}. " + "the quick brown fox jumps over the lazy dog; " * (1 + i % 5) for i in range(60)
]


def make_config(batch_size=8, **data):
    config = ml_collections.ConfigDict(
        {"data": dd.default_data_config(), "training": {"batch_size": batch_size}}
    )
    config.data.num_threads = 1
    for k, v in data.items():
        config.data[k] = v
    return config


def get(config, index=0, count=1):
    return dd.get_data(config, process_index=index, process_count=count)


@pytest.fixture
def text_folder(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, t in enumerate(TEXTS[:40]):
        (folder / f"{i:03d}.txt").write_text(t)
    (folder / "rest.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in TEXTS[40:]))
    return folder


def test_shakespeare_char(tmp_path):
    b = get(make_config(name="shakespeare", seq_len=128, cache_dir=str(tmp_path)))
    batch = next(b.train_iter)
    assert set(batch) == {"tokens"} and batch["tokens"].shape == (8, 128)
    assert batch["tokens"].dtype == np.int32
    assert b.num_classes == b.tokenizer.vocab_size == 84 and b.seq_len == 128
    assert b.info["train_chars"] + b.info["validation_chars"] > 5_000_000
    assert b.info["validation_documents"] == 2
    text = b.tokenizer.decode(next(b.eval_batches())["tokens"][0])
    assert text.startswith("# Macbeth")  # validation = the held-out plays, in order
    assert b.num_labels is None


def test_synthetic_bundle_info():
    b = get(
        make_config(
            name="synthetic",
            seq_len=32,
            synthetic_vocab_size=16,
            num_train_sequences=64,
            num_eval_sequences=16,
            seed=2,
        )
    )
    batch = next(b.train_iter)
    assert batch["tokens"].shape == (8, 32) and batch["tokens"].max() < 16
    chain = b.info["chain"]
    assert b.num_classes == 16
    assert b.info["entropy_rate"] == pytest.approx(chain.entropy_rate())
    assert b.info["sequence_entropy"] == pytest.approx(chain.sequence_entropy(32))
    assert b.info["entropy_rate"] < 0.6 * np.log(16)
    assert np.isfinite(chain.exact_log_likelihood(batch["tokens"])).all()
    assert len(list(b.eval_batches())) == 2


@pytest.mark.parametrize("name,L,K", [("digits", 64, 17), ("mnist", 784, 2)])
def test_images_bundle(name, L, K):
    b = get(make_config(name=name, batch_size=16))
    batch = next(b.train_iter)
    assert batch["tokens"].shape == (16, L) and batch["label"].shape == (16,)
    assert batch["label"].dtype == np.int32 and batch["tokens"].max() < K
    assert b.num_classes == K and b.num_labels == 10 and b.seq_len == L


def test_local_folder_sentencepiece_pad(text_folder, tmp_path):
    config = make_config(
        name="local",
        data_dir=str(text_folder),
        tokenizer="sentencepiece",
        vocab_size=60,
        packing="pad",
        seq_len=24,
        text_field="body",
        cache_dir=str(tmp_path / "cache"),
        eval_fraction=0.2,
    )
    b = get(config)
    batch = next(b.train_iter)
    assert set(batch) == {"tokens", "mask"} and batch["mask"].dtype == bool
    assert (batch["tokens"][:, 0] == b.tokenizer.bos_id).all()
    assert (batch["tokens"][~batch["mask"]] == b.tokenizer.pad_id).all()
    assert b.info["validation_documents"] == 12
    assert list((tmp_path / "cache" / "sentencepiece").glob("*.model"))
    row = next(b.eval_batches())["tokens"][0]
    assert b.tokenizer.decode(row).startswith(TEXTS[48][:20])


def test_per_character_divides_bits_per_token_by_characters_per_token(text_folder, tmp_path):
    """eval_bpc = eval_bpt * validation_tokens / validation_chars: equal to bits per token for
    characters (every character one token), smaller for BPE (several characters per token)."""
    ev = {"eval_bpt": 6.0, "eval_se_bpt": 0.3}
    char = get(make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=24,
                           eval_fraction=0.2))
    assert char.info["validation_chars"] == char.info["validation_tokens"]
    assert dd.per_character(ev, char.info) == {"eval_bpc": 6.0, "eval_se_bpc": 0.3}
    bpe = get(make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=24,
                          tokenizer="sentencepiece", vocab_size=60, cache_dir=str(tmp_path),
                          eval_fraction=0.2))
    ratio = bpe.info["validation_tokens"] / bpe.info["validation_chars"]
    assert ratio < 0.7  # a BPE of 60 pieces on this text: well over one character per token
    out = dd.per_character(ev, bpe.info)
    assert out["eval_bpc"] == pytest.approx(6.0 * ratio) and out["eval_se_bpc"] == pytest.approx(0.3 * ratio)
    assert dd.per_character(ev, get(make_config(name="synthetic", seq_len=8)).info) == {}  # no text


def test_local_folder_char_pack(text_folder):
    b = get(make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=16))
    assert next(b.train_iter)["tokens"].shape == (8, 16)
    assert b.tokenizer.bos_id is None


@pytest.fixture
def prepared_dir(tmp_path):
    tok = tl.SentencePieceTokenizer.train(TEXTS, vocab_size=70)
    array_records.write_tokenized_dataset(
        tmp_path / "owt" / "openwebtext",
        {"train": TEXTS[:50], "validation": TEXTS[50:]},
        tok,
        docs_per_shard=16,
    )
    return tmp_path / "owt", tok


def test_prepared_openwebtext_pack(prepared_dir):
    data_dir, tok = prepared_dir
    b = get(make_config(name="openwebtext", data_dir=str(data_dir), seq_len=32, batch_size=4))
    assert b.num_classes == 70 and b.tokenizer.vocab_size == 70
    batches = list(b.eval_batches())
    stream = np.concatenate([x["tokens"][x["valid"]].ravel() for x in batches])
    expected = np.concatenate([[2, *tok.encode(t), 3] for t in TEXTS[50:]])
    np.testing.assert_array_equal(stream, expected[: len(stream)])
    # The last partial batch is padded with rows marked invalid: every full row counts once.
    assert len(stream) == (len(expected) // 32) * 32
    assert all(x["tokens"].shape == (4, 32) for x in batches)
    assert b.info["num_documents_train"] == 50


def test_prepared_pad_and_seq_len_check(prepared_dir):
    data_dir, tok = prepared_dir
    b = get(
        make_config(
            name="openwebtext", data_dir=str(data_dir), seq_len=20, batch_size=4, packing="pad"
        )
    )
    batch = next(b.eval_batches())
    assert batch["mask"].sum(1).tolist() == [min(20, len(tok.encode(t)) + 2) for t in TEXTS[50:54]]
    longest = max(len(tok.encode(t)) for t in TEXTS[:50]) + 2
    with pytest.raises(ValueError, match="config.data.seq_len"):
        get(
            make_config(
                name="openwebtext",
                data_dir=str(data_dir),
                seq_len=longest + 1,
                packing="pad",
                batch_size=4,
            )
        )


def test_missing_prepared_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="launch/prepare_lm1b.py"):
        get(make_config(name="lm1b", data_dir=str(tmp_path)))


def test_two_processes_split_the_global_batch():
    def cfg():
        return make_config(name="digits", batch_size=8, seed=7)

    full = get(cfg())
    halves = [get(cfg(), index=p, count=2) for p in range(2)]
    assert halves[0].local_batch_size == 4 and halves[0].global_batch_size == 8
    for _ in range(3):
        g = next(full.train_iter)
        parts = [next(h.train_iter) for h in halves]
        np.testing.assert_array_equal(np.concatenate([p["tokens"] for p in parts]), g["tokens"])
    ev = [next(h.eval_batches()) for h in halves]
    np.testing.assert_array_equal(
        np.concatenate([e["label"] for e in ev]), next(full.eval_batches())["label"]
    )


def test_bundle_iterator_resume():
    b = get(make_config(name="digits", batch_size=8, seed=1))
    for _ in range(5):
        next(b.train_iter)
    state = b.train_iter.get_state()
    expected = [next(b.train_iter)["label"] for _ in range(4)]
    again = get(make_config(name="digits", batch_size=8, seed=1))
    again.train_iter.set_state(state)
    for e in expected:
        np.testing.assert_array_equal(next(again.train_iter)["label"], e)


def test_eval_cap_and_padding():
    b = get(make_config(name="digits", batch_size=100, eval_max_batches=1))
    assert len(list(b.eval_batches())) == 1 and len(list(b.eval_batches(2))) == 2
    p = get(make_config(name="digits", batch_size=100, eval_pad_last=True))
    batches = list(p.eval_batches())
    assert len(batches) == 3 and sum(int(x["valid"].sum()) for x in batches) == 297


@pytest.mark.parametrize(
    "overrides,batch_size,count,match",
    [
        ({"name": "wikipedia"}, 8, 1, "config.data.name"),
        ({"name": None}, 8, 1, "config.data.name"),
        ({"name": "shakespeare", "tokenizer": "bpe"}, 8, 1, "config.data.tokenizer"),
        ({"name": "digits", "tokenizer": "char"}, 8, 1, "config.data.tokenizer"),
        ({"name": "digits", "seq_len": 128}, 8, 1, "config.data.seq_len"),
        ({"name": "mnist", "seq_len": 64}, 8, 1, "config.data.seq_len"),
        ({"name": "synthetic", "seq_len": 0}, 8, 1, "config.data.seq_len"),
        ({"name": "synthetic", "packing": "pad"}, 8, 1, "config.data.packing"),
        ({"name": "shakespeare", "packing": "wrap"}, 8, 1, "config.data.packing"),
        ({"name": "shakespeare", "add_bos_eos": True}, 8, 1, "add_bos_eos"),
        (
            {"name": "shakespeare", "packing": "pad", "seq_len": 400_000},
            8,
            1,
            "config.data.seq_len",
        ),
        ({"name": "digits"}, 6, 4, "config.training.batch_size"),
        ({"name": "digits"}, 0, 1, "config.training.batch_size"),
        ({"name": "digits", "eval_batch_size": 6}, 8, 4, "config.data.eval_batch_size"),
        ({"name": "digits"}, 2000, 1, "fewer than one batch"),
        (
            {"name": "digits", "eval_batch_size": 300, "eval_pad_last": False},
            8, 1, "fewer than one eval batch",
        ),
        ({"name": "synthetic", "num_states": 8}, 8, 1, "config.data.num_states"),
        ({"name": "synthetic", "synthetic_support": 1}, 8, 1, "config.data.synthetic_support"),
        ({"name": "shakespeare", "heldout_plays": ("hamlet", "nope")}, 8, 1, "heldout_plays"),
        ({"name": "local"}, 8, 1, "config.data.data_dir"),
    ],
)
def test_bad_config_errors(overrides, batch_size, count, match):
    config = make_config(batch_size=batch_size, num_train_sequences=64, num_eval_sequences=16)
    for k, v in overrides.items():
        config.data[k] = v
    with pytest.raises(ValueError, match=match):
        get(config, count=count)


def test_local_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.data.data_dir"):
        get(make_config(name="local", data_dir=str(empty)))
    (empty / "a.txt").write_text("abc" * 10)
    (empty / "b.txt").write_text("abc" * 10)
    with pytest.raises(ValueError, match="fewer than one batch"):
        get(make_config(name="local", data_dir=str(empty), seq_len=16))
    # a held-out split shorter than one row: eval_pad_last (already the default) cannot help
    split = tmp_path / "split"
    (split / "train").mkdir(parents=True)
    (split / "validation").mkdir()
    (split / "train" / "a.txt").write_text("abcdefgh" * 200)
    (split / "validation" / "b.txt").write_text("abc")
    with pytest.raises(ValueError, match="shorter than one row") as err:
        get(make_config(name="local", data_dir=str(split), seq_len=16))
    assert "eval_pad_last" not in str(err.value)


def test_missing_training_batch_size():
    config = ml_collections.ConfigDict({"data": {"name": "digits"}})
    with pytest.raises(ValueError, match="config.training.batch_size"):
        get(config)
    with pytest.raises(ValueError, match="config.data"):
        get(ml_collections.ConfigDict({"training": {"batch_size": 8}}))


def test_minimal_config_uses_defaults():
    config = ml_collections.ConfigDict({"data": {"name": "digits"}, "training": {"batch_size": 4}})
    b = dd.get_data(config)  # process index/count from jax
    assert b.seq_len == 64 and b.info["process_count"] == 1


def test_local_bad_documents_follow_config(tmp_path, text_folder, caplog):
    (text_folder / "zz_bad.txt").write_bytes(b"fine text \xff more")
    with pytest.raises(ValueError, match=r"zz_bad\.txt \(byte 10\): not valid UTF-8"):
        get(make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=16))
    config = make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=16,
                         on_bad_document="skip")
    with caplog.at_level("WARNING"):
        b = get(config)
    assert "zz_bad.txt (byte 10)" in caplog.text
    assert b.info["train_documents"] + b.info["validation_documents"] == len(TEXTS)
    with pytest.raises(ValueError, match=r"config\.data\.on_bad_document='ignore'"):
        get(make_config(name="local", data_dir=str(text_folder), on_bad_document="ignore"))
    with pytest.raises(ValueError, match=r"001\.txt \(byte 64\): document of 97 bytes"):
        get(make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=16,
                        max_document_bytes=64, on_bad_document="error"))


def test_training_batches_are_checked_on_the_host(text_folder, monkeypatch):
    """A tokenizer that emits an id outside its vocabulary is caught before the train step."""
    real = tl.encode_documents

    def faulty(tok, texts):
        return [np.concatenate([d, [tok.vocab_size + 3]]) for d in real(tok, texts)]

    monkeypatch.setattr(tl, "encode_documents", faulty)
    b = get(make_config(name="local", data_dir=str(text_folder), text_field="body", seq_len=16))
    with pytest.raises(ValueError, match=rf"training batch 'tokens'.*\[0, {b.num_classes}\)"):
        next(b.train_iter)
