"""Local folders of .txt and .jsonl documents."""

import json

import pytest

from discrete_diffusion.data import local_text


def _write(folder, docs_txt=(), jsonl=None, field="text"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs_txt):
        (folder / f"doc{i:02d}.txt").write_text(d)
    if jsonl is not None:
        lines = [json.dumps({field: d, "id": i}) for i, d in enumerate(jsonl)]
        (folder / "more.jsonl").write_text("\n".join(lines) + "\n\n")


def test_txt_and_jsonl_documents_in_order(tmp_path):
    _write(tmp_path, ["first", "second", ""], jsonl=["j0", "j1"])
    (tmp_path / "ignored.csv").write_text("x")
    assert local_text.read_documents(tmp_path) == ["first", "second", "j0", "j1"]


def test_configurable_field(tmp_path):
    _write(tmp_path, jsonl=["a", "b"], field="content")
    assert local_text.read_documents(tmp_path, "content") == ["a", "b"]
    with pytest.raises(ValueError, match="text_field"):
        local_text.read_documents(tmp_path, "text")


def test_split_by_fraction(tmp_path):
    _write(tmp_path, [f"document {i}" for i in range(20)])
    train, valid = local_text.load_splits(tmp_path, eval_fraction=0.1)
    assert len(train) == 18 and valid == ["document 18", "document 19"]


def test_split_by_subfolders(tmp_path):
    _write(tmp_path / "train", ["t0", "t1", "t2"])
    _write(tmp_path / "validation", jsonl=["v0"])
    assert local_text.load_splits(tmp_path) == (["t0", "t1", "t2"], ["v0"])


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        local_text.load_splits(tmp_path)
    with pytest.raises(ValueError, match="data_dir"):
        local_text.load_splits(tmp_path / "absent")


# ---- bad documents: undecodable, oversized, empty ---------------------------------

def _corpus(folder):
    _write(folder, ["good one", "good two"], jsonl=["j0", "j1"])
    return folder


def test_non_utf8_txt_is_named_with_its_byte_offset(tmp_path):
    _corpus(tmp_path)
    (tmp_path / "bad.txt").write_bytes(b"caf\xc3\xa9 ok \xff\xfe tail")
    with pytest.raises(ValueError, match=r"bad\.txt \(byte 9\): not valid UTF-8") as e:
        local_text.read_documents(tmp_path)
    assert "config.data.on_bad_document='skip'" in str(e.value)
    assert str(tmp_path / "bad.txt") in str(e.value)


def test_non_utf8_txt_is_skipped_with_a_warning_when_asked(tmp_path, caplog):
    _corpus(tmp_path)
    (tmp_path / "bad.txt").write_bytes(b"abc\xff")
    options = local_text.ReadOptions(on_bad_document="skip")
    with caplog.at_level("WARNING"):
        docs = local_text.read_documents(tmp_path, options=options)
    assert docs == ["good one", "good two", "j0", "j1"]
    assert "skipped 1 document" in caplog.text and "bad.txt (byte 3)" in caplog.text


def test_jsonl_faults_name_file_line_and_byte(tmp_path):
    good = json.dumps({"text": "ok"}).encode() + b"\n"
    cases = [
        (b'{"text": "a\xff"}\n', r"bad\.jsonl:2 \(byte 26\): not valid UTF-8"),
        (b'{"text": "a",}\n', r"bad\.jsonl:2 \(byte \d+\): not valid JSON"),
        (b'["text"]\n', r"bad\.jsonl:2 \(byte 15\): a JSON list, not an object"),
        (b'{"text": null}\n', r"bad\.jsonl:2 \(byte 15\): field 'text' .* holds a NoneType"),
        (b'{"body": "x"}\n', r"bad\.jsonl:2 \(byte 15\): has no field 'text'"),
    ]
    for i, (line, match) in enumerate(cases):
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / "bad.jsonl").write_bytes(good + line + good)
        with pytest.raises(ValueError, match=match):
            local_text.read_documents(folder)
        skip = local_text.ReadOptions(on_bad_document="skip")
        assert local_text.read_documents(folder, options=skip) == ["ok", "ok"]


def test_invalid_json_byte_offset_counts_utf8_bytes(tmp_path):
    (tmp_path / "a.jsonl").write_bytes('{"text": "é€", oops}\n'.encode())
    with pytest.raises(ValueError, match=r"a\.jsonl:1 \(byte 18\): not valid JSON") as e:
        local_text.read_documents(tmp_path)
    assert isinstance(e.value, local_text.BadDocumentError)


def test_oversized_documents(tmp_path, caplog):
    _corpus(tmp_path)
    (tmp_path / "big.txt").write_text("x" * 100)
    (tmp_path / "more.jsonl").write_text(
        "\n".join(json.dumps({"text": t}) for t in ["j0", "y" * 200, "j1"]) + "\n"
    )
    options = local_text.ReadOptions(max_document_bytes=64)
    with pytest.raises(ValueError, match=r"big\.txt .*100 bytes .*max_document_bytes=64"):
        local_text.read_documents(tmp_path, options=options)
    (tmp_path / "big.txt").unlink()
    with pytest.raises(ValueError, match=r"more\.jsonl:2 \(byte 15\): line is longer"):
        local_text.read_documents(tmp_path, options=options)
    skip = local_text.ReadOptions(max_document_bytes=64, on_bad_document="skip")
    with caplog.at_level("WARNING"):
        assert local_text.read_documents(tmp_path, options=skip) == [
            "good one", "good two", "j0", "j1"
        ]
    assert "more.jsonl:2 (byte 15)" in caplog.text
    assert local_text.read_documents(tmp_path) == ["good one", "good two", "j0", "y" * 200, "j1"]


def test_empty_documents_warn_by_default_and_can_be_errors(tmp_path, caplog):
    _write(tmp_path, ["first", ""], jsonl=["j0", ""])
    with caplog.at_level("WARNING"):
        assert local_text.read_documents(tmp_path) == ["first", "j0"]
    assert "skipped 2 document" in caplog.text
    assert "doc01.txt: empty document" in caplog.text and "more.jsonl:2: empty" in caplog.text
    options = local_text.ReadOptions(on_empty_document="error")
    with pytest.raises(ValueError, match=r"doc01\.txt: empty document.*on_empty_document"):
        local_text.read_documents(tmp_path, options=options)


def test_read_options_name_the_field_and_allowed_values():
    with pytest.raises(ValueError, match=r"config\.data\.on_bad_document='drop'.*\['error', 'skip'\]"):
        local_text.ReadOptions(on_bad_document="drop")
    with pytest.raises(ValueError, match=r"config\.data\.on_empty_document='keep'"):
        local_text.ReadOptions(on_empty_document="keep")
    with pytest.raises(ValueError, match=r"config\.data\.max_document_bytes"):
        local_text.ReadOptions(max_document_bytes=0)


def test_symbolic_links_are_followed_loops_and_dangling_links_named(tmp_path, caplog):
    """22 documents, 20 of them in a symlinked sub-folder; a loop and a dangling *.txt link."""
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    _write(corpus, ["a", "b"])
    _write(elsewhere, [f"linked {i}" for i in range(20)])
    (corpus / "sub").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(corpus, target_is_directory=True)
    (corpus / "gone.txt").symlink_to(tmp_path / "missing.txt")
    with caplog.at_level("WARNING"):
        docs = local_text.read_documents(corpus)
    assert len(docs) == 22 and sorted(docs) == sorted(["a", "b"] + [f"linked {i}" for i in range(20)])
    assert "gone.txt: a symbolic link whose target" in caplog.text and "is missing" in caplog.text
    assert "loop: a link to the folder" in caplog.text


def test_a_corpus_of_whitespace_only_is_an_error(tmp_path):
    _write(tmp_path, [" \n", "\t\t", "   "])
    with pytest.raises(ValueError, match="only whitespace"):
        local_text.load_splits(tmp_path, eval_fraction=0.3)
