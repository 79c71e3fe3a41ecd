"""Documents from a local folder: ``.txt`` files (one document each) and ``.jsonl`` files.

Every ``*.txt`` file under the folder (recursively) is one document; every line of every
``*.jsonl`` file is one document, its text under ``text_field`` (default ``'text'``). Files are
read in sorted path order and empty documents are skipped.

Split: when the folder has ``train/`` and ``validation/`` subfolders, those are the splits.
Otherwise the last ``max(1, round(eval_fraction * N))`` of the N documents (in the order above)
form the validation split, so adding files only moves documents at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_documents(folder: str | os.PathLike, text_field: str = "text") -> list[str]:
    """All non-empty documents under ``folder`` in sorted path order (see module docstring)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"config.data.data_dir={str(folder)!r} is not a folder")
    docs: list[str] = []
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
    for path in files:
        if path.suffix == ".txt":
            docs.append(path.read_text(encoding="utf-8"))
            continue
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if text_field not in record:
                    raise ValueError(
                        f"{path}:{lineno} has no field {text_field!r} "
                        f"(config.data.text_field; fields present: {sorted(record)})"
                    )
                docs.append(str(record[text_field]))
    return [d for d in docs if d]


def load_splits(
    folder: str | os.PathLike,
    *,
    text_field: str = "text",
    eval_fraction: float = 0.05,
) -> tuple[list[str], list[str]]:
    """(train documents, validation documents) of a local folder (see module docstring)."""
    folder = Path(folder).expanduser()
    if (folder / "train").is_dir() and (folder / "validation").is_dir():
        train = read_documents(folder / "train", text_field)
        valid = read_documents(folder / "validation", text_field)
    else:
        if not 0 < eval_fraction < 1:
            raise ValueError(f"config.data.eval_fraction must lie in (0, 1), got {eval_fraction}")
        docs = read_documents(folder, text_field)
        if len(docs) < 2:
            raise ValueError(
                f"config.data.data_dir={str(folder)!r} holds {len(docs)} non-empty documents "
                "(*.txt files or *.jsonl lines); need at least 2 to split train/validation"
            )
        n_eval = min(len(docs) - 1, max(1, round(eval_fraction * len(docs))))
        train, valid = docs[:-n_eval], docs[-n_eval:]
    if not train or not valid:
        raise ValueError(
            f"config.data.data_dir={str(folder)!r}: empty split (train {len(train)} documents, "
            f"validation {len(valid)}); add *.txt or *.jsonl files"
        )
    return train, valid
