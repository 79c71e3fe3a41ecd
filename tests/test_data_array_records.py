"""Prepared-dataset format: writer -> reader round trip, errors, and the prepare scripts offline."""

import importlib.util
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from discrete_diffusion.data import array_records, prepare, prepared
from discrete_diffusion.data import tokenizers as tl

REPO = Path(__file__).resolve().parents[1]
TEXTS = [f"document number {i}: " + "word " * (i % 7) for i in range(40)]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data code tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_write_then_read_round_trip(tmp_path):
    tok = tl.CharTokenizer.from_texts(TEXTS)
    meta = array_records.write_tokenized_dataset(
        tmp_path / "ds",
        {"train": TEXTS[:30], "validation": TEXTS[30:] + [[0, 1, 2]]},
        tok,
        docs_per_shard=8,
    )
    assert len(meta["splits"]["train"]["files"]) == 4  # 30 documents, 8 per shard
    assert meta["dtype"] == "<u2"
    ds = array_records.TokenizedDataset(tmp_path / "ds")
    assert ds.vocab_size == tok.vocab_size and ds.splits == ["train", "validation"]
    store = ds.documents("train")
    assert len(store) == 30
    for i in (0, 7, 8, 29):
        assert tok.decode(store[i]) == TEXTS[i]
        assert store.lengths[i] == len(TEXTS[i])
    valid = ds.documents("validation")
    np.testing.assert_array_equal(valid[10], [0, 1, 2])  # id lists pass through untouched
    assert ds.tokenizer().decode(store[3]) == TEXTS[3]


def test_out_of_range_ids_are_rejected(tmp_path):
    tok = tl.IntegerTokenizer(5)
    with pytest.raises(ValueError, match="outside"):
        array_records.write_tokenized_dataset(tmp_path / "w", {"train": [[0, 5]]}, tok)
    array_records.write_tokenized_dataset(tmp_path / "d", {"train": [[0, 4], [1]]}, tok)
    meta_path = tmp_path / "d" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["vocab_size"] = 4  # a tokenizer/data mismatch is caught when the dataset is opened
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="vocab_size"):
        array_records.TokenizedDataset(tmp_path / "d")
    meta["splits"]["train"]["max_token_id"] = 3  # ... and per document when read
    meta_path.write_text(json.dumps(meta))
    store = array_records.TokenizedDataset(tmp_path / "d").documents("train")
    np.testing.assert_array_equal(store[1], [1])
    with pytest.raises(ValueError, match="outside"):
        store[0]


def test_missing_prepared_dataset_explains_and_stays_offline(tmp_path, no_network):
    for name, script in [("openwebtext", "prepare_openwebtext.py"), ("lm1b", "prepare_lm1b.py")]:
        with pytest.raises(FileNotFoundError) as e:
            prepared.open_prepared(name, tmp_path)
        msg = str(e.value)
        assert f"python launch/{script} --data_dir={tmp_path}" in msg
        assert str(tmp_path / name) in msg


def test_sentencepiece_encode_parallel_matches_serial(tmp_path):
    tok = tl.SentencePieceTokenizer.train(TEXTS, vocab_size=40)
    serial = list(prepare.encode_parallel(tok, TEXTS, num_proc=1, chunk_size=7))
    assert [tok.decode(d) for d in serial] == TEXTS
    parallel = list(prepare.encode_parallel(tok, TEXTS, num_proc=2, chunk_size=7))
    assert [d.tolist() for d in parallel] == [d.tolist() for d in serial]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "launch" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jsonl(path, texts):
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    return path


def test_prepare_openwebtext_script_offline(tmp_path, no_network):
    src = _jsonl(tmp_path / "owt.jsonl", TEXTS)
    _script("prepare_openwebtext").main(
        [
            f"--data_dir={tmp_path / 'data'}",
            f"--input_jsonl={src}",
            "--tokenizer=sentencepiece",
            "--vocab_size=40",
            "--num_eval_documents=10",
            "--num_proc=1",
        ]
    )
    ds = prepared.open_prepared("openwebtext", tmp_path / "data")
    assert len(ds.documents("train")) == 30 and len(ds.documents("validation")) == 10
    assert ds.tokenizer().decode(ds.documents("validation")[9]) == TEXTS[-1]  # last documents


def test_prepare_lm1b_script_offline(tmp_path, no_network):
    train = _jsonl(tmp_path / "train.jsonl", TEXTS[:25])
    valid = _jsonl(tmp_path / "valid.jsonl", TEXTS[25:])
    _script("prepare_lm1b").main(
        [
            f"--data_dir={tmp_path / 'data'}",
            f"--input_jsonl={train},{valid}",
            "--tokenizer=sentencepiece",
            "--vocab_size=40",
            "--num_proc=1",
        ]
    )
    ds = prepared.open_prepared("lm1b", tmp_path / "data")
    assert len(ds.documents("train")) == 25 and len(ds.documents("validation")) == 15
    assert ds.special_ids() == {"bos_id": 2, "eos_id": 3, "pad_id": 0}


def test_prepare_script_names_a_bad_jsonl_line_or_skips_it(tmp_path, no_network, caplog):
    src = _jsonl(tmp_path / "owt.jsonl", TEXTS)
    with src.open("ab") as f:
        f.write(b'{"text": "broken \xff"}\n{"text": ""}\n')
    args = [
        f"--data_dir={tmp_path / 'data'}",
        f"--input_jsonl={src}",
        "--tokenizer=sentencepiece",
        "--vocab_size=40",
        "--num_eval_documents=10",
        "--num_proc=1",
    ]
    offset = src.stat().st_size - len(b'\xff"}\n{"text": ""}\n')
    with pytest.raises(ValueError, match=rf"owt\.jsonl:{len(TEXTS) + 1} \(byte {offset}\): not valid UTF-8"):
        _script("prepare_openwebtext").main(args)
    with caplog.at_level("WARNING"):
        _script("prepare_openwebtext").main([*args, "--on_bad_document=skip"])
    assert "skipped 2 document" in caplog.text and "empty document" in caplog.text
    ds = prepared.open_prepared("openwebtext", tmp_path / "data")
    assert len(ds.documents("train")) + len(ds.documents("validation")) == len(TEXTS)


def test_a_shard_truncated_mid_run_is_named(tmp_path):
    tok = tl.IntegerTokenizer(50)
    docs = [list(range(i % 50, 50)) * 4 for i in range(300)]
    array_records.write_tokenized_dataset(tmp_path / "d", {"train": docs}, tok, docs_per_shard=100)
    store = array_records.TokenizedDataset(tmp_path / "d").documents("train")
    shard = tmp_path / "d" / "train-00002.array_record"
    os.truncate(shard, os.path.getsize(shard) // 3)
    np.testing.assert_array_equal(store[150], docs[150])  # other shards still read
    with pytest.raises(array_records.DataFileError, match=f"{shard}: cannot read document 250"):
        store[250]
    with pytest.raises(array_records.DataFileError, match=f"{shard}: cannot be opened"):
        array_records.TokenizedDataset(tmp_path / "d").documents("train")
