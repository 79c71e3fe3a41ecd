"""Documents from a local folder: ``.txt`` files (one document each) and ``.jsonl`` files.

Every ``*.txt`` file under the folder (recursively, following symbolic links) is one document;
every line of every ``*.jsonl`` file is one document, its text under ``text_field`` (default
``'text'``). Files are read in sorted path order; blank ``.jsonl`` lines are not documents. A
folder reached twice through links (a loop) is read once, and links whose target is missing or
loops are named in the warning of skipped documents. A corpus of whitespace only is an error.

Split: when the folder has ``train/`` and ``validation/`` subfolders, those are the splits.
Otherwise the last ``max(1, round(eval_fraction * N))`` of the N documents (in the order above)
form the validation split, so adding files only moves documents at the end.

Bad documents (never dropped silently):

* undecodable: a ``.txt`` file or ``.jsonl`` line that is not UTF-8, a line that is not a JSON
  object, a record without ``text_field`` or whose ``text_field`` is not a string;
* oversized: a ``.txt`` file or ``.jsonl`` line of more than ``max_document_bytes`` bytes
  (``config.data.max_document_bytes``, default 1 GiB; None: no limit), detected before it is
  read into memory.

``on_bad_document`` (``config.data.on_bad_document``): ``'error'`` (default) raises ValueError
naming the file, the line (``.jsonl``) and the byte offset of the fault; ``'skip'`` leaves the
document out and logs a warning listing what was skipped.

Empty documents (an empty ``.txt`` file, a record whose text is ``''``) hold no tokens:
``on_empty_document`` (``config.data.on_empty_document``): ``'skip'`` (default) leaves them out
with a warning; ``'error'`` raises ValueError naming them.

``read_jsonl`` also reads the ``--input_jsonl`` files of ``launch/prepare_*.py`` (flags
``--on_bad_document``, ``--on_empty_document``, ``--max_document_bytes``; see ``add_flags``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

BAD_DOCUMENT_ACTIONS = ("error", "skip")
EMPTY_DOCUMENT_ACTIONS = ("skip", "error")
DEFAULT_MAX_DOCUMENT_BYTES = 1 << 30
_MAX_LISTED = 10  # skipped documents named in the warning
_CHUNK = 1 << 20


class BadDocumentError(ValueError):
    """A document that cannot be used, with its location (the message names the file and byte)."""


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """What to do with bad documents (see the module docstring)."""

    text_field: str = "text"
    on_bad_document: str = "error"
    on_empty_document: str = "skip"
    max_document_bytes: int | None = DEFAULT_MAX_DOCUMENT_BYTES

    def __post_init__(self) -> None:
        """Validates the fields; errors name the config field and the allowed values."""
        if self.on_bad_document not in BAD_DOCUMENT_ACTIONS:
            raise ValueError(
                f"config.data.on_bad_document={self.on_bad_document!r} is not one of "
                f"{list(BAD_DOCUMENT_ACTIONS)}"
            )
        if self.on_empty_document not in EMPTY_DOCUMENT_ACTIONS:
            raise ValueError(
                f"config.data.on_empty_document={self.on_empty_document!r} is not one of "
                f"{list(EMPTY_DOCUMENT_ACTIONS)}"
            )
        m = self.max_document_bytes
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(
                f"config.data.max_document_bytes must be None or an integer >= 1, got {m!r}"
            )
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ValueError(
                f"config.data.text_field must be a non-empty string, got {self.text_field!r}"
            )


_SKIP_HINT = (
    "; fix or remove it, or set config.data.on_bad_document='skip' (allowed: "
    f"{list(BAD_DOCUMENT_ACTIONS)}; --on_bad_document of launch/prepare_*.py) to skip such "
    "documents with a warning"
)
_EMPTY_HINT = (
    "; config.data.on_empty_document='skip' (allowed: "
    f"{list(EMPTY_DOCUMENT_ACTIONS)}; --on_empty_document of launch/prepare_*.py) skips empty "
    "documents with a warning"
)


class _Collector:
    """Applies the options to each fault: raise, or remember it for one warning at the end."""

    def __init__(self, options: ReadOptions):
        self.options = options
        self.skipped: list[str] = []

    def bad(self, where: str, reason: str) -> None:
        """An undecodable or oversized document."""
        if self.options.on_bad_document == "error":
            raise BadDocumentError(f"{where}: {reason}{_SKIP_HINT}")
        self.skipped.append(f"{where}: {reason}")

    def empty(self, where: str) -> None:
        """An empty document."""
        if self.options.on_empty_document == "error":
            raise BadDocumentError(f"{where}: empty document{_EMPTY_HINT}")
        self.skipped.append(f"{where}: empty document")

    def note(self, where: str, reason: str) -> None:
        """A file left out whatever the options (a dangling or looping link, a folder already
        read through another link): named in the warning."""
        self.skipped.append(f"{where}: {reason}")

    def warn(self, folder: Path | str) -> None:
        """One warning naming the skipped documents (the first few) and their number."""
        if not self.skipped:
            return
        listed = "; ".join(self.skipped[:_MAX_LISTED])
        more = len(self.skipped) - _MAX_LISTED
        logging.warning(
            "skipped %d document(s) under %s (config.data.on_bad_document=%r, "
            "on_empty_document=%r): %s%s",
            len(self.skipped), folder, self.options.on_bad_document,
            self.options.on_empty_document, listed, f"; and {more} more" if more > 0 else "",
        )


def _decode(raw: bytes, where: str, base: int, collector: _Collector) -> str | None:
    """UTF-8 text of ``raw`` (which starts at byte ``base`` of its file), or None if skipped."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        collector.bad(
            f"{where} (byte {base + e.start})",
            f"not valid UTF-8 ({e.reason}: {raw[e.start:e.end]!r})",
        )
        return None


def _read_txt(path: Path, collector: _Collector) -> str | None:
    """The document of a ``.txt`` file, or None if it was skipped."""
    limit = collector.options.max_document_bytes
    size = path.stat().st_size
    if limit is not None and size > limit:
        collector.bad(
            f"{path} (byte {limit})",
            f"document of {size} bytes is longer than config.data.max_document_bytes={limit}",
        )
        return None
    text = _decode(path.read_bytes(), str(path), 0, collector)
    if text == "":
        collector.empty(str(path))
        return None
    return text


def _lines(f, limit: int | None) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, byte offset, bytes, oversized) of each line; oversized lines are not kept."""
    offset, lineno = 0, 0
    while True:
        lineno += 1
        line = f.readline() if limit is None else f.readline(limit + 2)
        if not line:
            return
        start = offset
        offset += len(line)
        body = line.rstrip(b"\r\n")
        if limit is not None and len(body) > limit:
            while not line.endswith(b"\n"):  # skip the rest of the line, chunk by chunk
                line = f.readline(_CHUNK)
                if not line:
                    break
                offset += len(line)
            yield lineno, start, b"", True
            continue
        yield lineno, start, body, False


def read_jsonl(path: str | os.PathLike, options: ReadOptions | None = None,
               collector: _Collector | None = None) -> list[str]:
    """The documents of one ``.jsonl`` file (``options.text_field`` of each line's object).

    Bad and empty documents are handled as ``options`` say (module docstring); with no
    ``collector`` the skipped ones are logged at the end of this file.
    """
    options = options or ReadOptions()
    own = collector is None
    collector = collector or _Collector(options)
    path = Path(path)
    field = options.text_field
    docs: list[str] = []
    with path.open("rb") as f:
        for lineno, start, raw, oversized in _lines(f, options.max_document_bytes):
            where = f"{path}:{lineno}"
            if oversized:
                collector.bad(
                    f"{where} (byte {start})",
                    "line is longer than config.data.max_document_bytes="
                    f"{options.max_document_bytes}",
                )
                continue
            line = _decode(raw, where, start, collector)
            if line is None or not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                pos = start + len(line[: e.pos].encode("utf-8"))
                collector.bad(f"{where} (byte {pos})", f"not valid JSON ({e.msg})")
                continue
            if not isinstance(record, dict):
                collector.bad(
                    f"{where} (byte {start})",
                    f"a JSON {type(record).__name__}, not an object with field {field!r}",
                )
                continue
            if field not in record:
                collector.bad(
                    f"{where} (byte {start})",
                    f"has no field {field!r} (config.data.text_field; fields present: "
                    f"{sorted(record)})",
                )
                continue
            text = record[field]
            if not isinstance(text, str):
                collector.bad(
                    f"{where} (byte {start})",
                    f"field {field!r} (config.data.text_field) holds a "
                    f"{type(text).__name__}, not a string",
                )
                continue
            if text == "":
                collector.empty(where)
                continue
            docs.append(text)
    if own:
        collector.warn(path)
    return docs


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds ``--on_bad_document``, ``--on_empty_document``, ``--max_document_bytes``."""
    parser.add_argument("--on_bad_document", choices=BAD_DOCUMENT_ACTIONS, default="error",
                        help="undecodable or oversized jsonl lines: raise, or skip with a warning")
    parser.add_argument("--on_empty_document", choices=EMPTY_DOCUMENT_ACTIONS, default="skip",
                        help="documents whose text is '': skip with a warning, or raise")
    parser.add_argument("--max_document_bytes", type=int, default=DEFAULT_MAX_DOCUMENT_BYTES,
                        help="longest jsonl line (bytes)")


def options_from_flags(args: argparse.Namespace, text_field: str = "text") -> ReadOptions:
    """The ``ReadOptions`` of the flags of ``add_flags``."""
    return ReadOptions(
        text_field=text_field,
        on_bad_document=args.on_bad_document,
        on_empty_document=args.on_empty_document,
        max_document_bytes=args.max_document_bytes,
    )


def document_files(folder: Path, collector: _Collector) -> list[Path]:
    """The ``*.txt`` / ``*.jsonl`` files under ``folder`` in sorted path order, following
    symbolic links to files and folders. A folder reached a second time (a link loop, or two
    links to one folder) is read once; a ``*.txt`` / ``*.jsonl`` link whose target is missing or
    loops, and a folder that cannot be listed, are named through ``collector.note``."""
    files: list[Path] = []
    seen: set[str] = set()

    def visit(d: Path) -> None:
        real = os.path.realpath(d)
        if real in seen:
            collector.note(str(d), f"a link to the folder {real}, already read (a link loop "
                                   "or a second link to it)")
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as err:
            collector.note(str(d), f"folder cannot be listed ({err.strerror})")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=True):
                visit(path)
            elif path.suffix in (".txt", ".jsonl"):
                if entry.is_file(follow_symlinks=True):
                    files.append(path)
                elif entry.is_symlink():
                    target = os.readlink(path)
                    why = "loops" if os.path.lexists(os.path.realpath(path)) else "is missing"
                    collector.note(str(path), f"a symbolic link whose target {target!r} {why}")

    visit(folder)
    return sorted(files)


def read_documents(
    folder: str | os.PathLike, text_field: str = "text", *, options: ReadOptions | None = None
) -> list[str]:
    """All usable documents under ``folder`` in sorted path order (see module docstring).

    ``options`` (default: ``ReadOptions(text_field)``) says what to do with bad and empty
    documents; skipped ones are logged in one warning.
    """
    options = options or ReadOptions(text_field=text_field)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"config.data.data_dir={str(folder)!r} is not a folder")
    collector = _Collector(options)
    docs: list[str] = []
    for path in document_files(folder, collector):
        if path.suffix == ".txt":
            text = _read_txt(path, collector)
            if text is not None:
                docs.append(text)
        else:
            docs.extend(read_jsonl(path, options, collector))
    collector.warn(folder)
    return docs


def load_splits(
    folder: str | os.PathLike,
    *,
    text_field: str = "text",
    eval_fraction: float = 0.05,
    options: ReadOptions | None = None,
) -> tuple[list[str], list[str]]:
    """(train documents, validation documents) of a local folder (see module docstring).

    ``options`` (default: ``ReadOptions(text_field)``, which then overrides ``text_field``).
    """
    options = options or ReadOptions(text_field=text_field)
    folder = Path(folder).expanduser()
    if (folder / "train").is_dir() and (folder / "validation").is_dir():
        train = read_documents(folder / "train", options=options)
        valid = read_documents(folder / "validation", options=options)
    else:
        if not 0 < eval_fraction < 1:
            raise ValueError(f"config.data.eval_fraction must lie in (0, 1), got {eval_fraction}")
        docs = read_documents(folder, options=options)
        if len(docs) < 2:
            raise ValueError(
                f"config.data.data_dir={str(folder)!r} holds {len(docs)} non-empty documents "
                "(*.txt files or *.jsonl lines); need at least 2 to split train/validation"
            )
        n_eval = min(len(docs) - 1, max(1, round(eval_fraction * len(docs))))
        train, valid = docs[:-n_eval], docs[-n_eval:]
    if train and not any(d.strip() for d in train + valid):
        raise ValueError(
            f"config.data.data_dir={str(folder)!r}: its {len(train) + len(valid)} documents hold "
            "only whitespace; there is nothing to learn (add text)"
        )
    if not train or not valid:
        raise ValueError(
            f"config.data.data_dir={str(folder)!r}: empty split (train {len(train)} documents, "
            f"validation {len(valid)}); add *.txt or *.jsonl files"
        )
    return train, valid
