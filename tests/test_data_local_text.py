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
