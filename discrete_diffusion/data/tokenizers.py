"""Tokenizers: text <-> integer ids over the K clean classes.

Library convention: a tokenizer only knows the K *clean* classes, ids ``0 .. K-1`` with
``K = tokenizer.vocab_size``. The diffusion MASK token is not part of any tokenizer: the masked
process uses id ``K`` for it (so ``x_t`` takes ``K + 1`` values) and owns that id. Every
``decode`` here tolerates ids ``>= K`` and renders them as a visible placeholder (for characters
the first of ``CHAR_MASKS`` that is not a character of the corpus, ``'█'`` unless the corpus holds
it, so a mask never reads as text; ``'_'`` for integer ids; ``'[MASK]'`` for sentencepiece and
Hugging Face tokenizers), so samples with leftover masks can be printed.

Implementations:
  * ``CharTokenizer``: one id per character of the corpus (sorted code points, deterministic).
  * ``SentencePieceTokenizer``: a BPE model trained on the corpus (pad=0, unk=1, bos=2, eos=3,
    newline kept as its own piece so ``decode(encode(s)) == s`` for covered characters), cached
    on disk under ``cache_dir`` keyed by a fingerprint of the corpus and the settings.
  * ``IntegerTokenizer``: ids written as space-separated integers (synthetic data, images).
  * ``HuggingFaceTokenizer``: a pretrained tokenizer by name (``gpt2``, ``bert-base-uncased``),
    used only for datasets prepared with one; needs ``transformers`` at load time.

Tokenizers that travel with a prepared dataset are written with ``save_tokenizer`` and read back
with ``load_tokenizer``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from discrete_diffusion.data import text_memo

CHAR_MASK = "_"  # integer ids (IntegerTokenizer)
CHAR_MASKS = ("\u2588", "\u2591", "\u00a4", "\ufffd")  # characters: the first the corpus lacks
PIECE_MASK = "[MASK]"
SPM_SPEC_VERSION = 1


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline and the samplers need from a tokenizer."""

    @property
    def vocab_size(self) -> int:
        """Number K of clean classes; valid ids are ``0 .. K-1`` (the mask id K is not one)."""
        ...

    @property
    def bos_id(self) -> int | None:
        """Beginning-of-document id, or None when the tokenizer has none."""
        ...

    @property
    def eos_id(self) -> int | None:
        """End-of-document id, or None when the tokenizer has none."""
        ...

    @property
    def pad_id(self) -> int | None:
        """Padding id, or None when the tokenizer has none."""
        ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no BOS/EOS added; packing adds them)."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ids ``>= vocab_size`` render as a mask placeholder."""
        ...


def _as_id_list(ids: Iterable[int]) -> list[int]:
    """Flattens an id sequence (list, numpy or jax array) into Python ints, rejecting negatives."""
    out = [int(i) for i in np.asarray(ids).reshape(-1)]
    if any(i < 0 for i in out):
        raise ValueError(f"negative token id in {out[:20]}")
    return out


def _split_masked_runs(ids: list[int], vocab_size: int) -> list[list[int] | None]:
    """Splits ids into runs of valid ids, with ``None`` standing for each id ``>= vocab_size``."""
    runs: list[list[int] | None] = []
    current: list[int] = []
    for i in ids:
        if i >= vocab_size:
            if current:
                runs.append(current)
                current = []
            runs.append(None)
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


class CharTokenizer:
    """Character-level tokenizer: id ``j`` is the ``j``-th character in sorted code-point order.

    It has no BOS/EOS/PAD ids (all None): character models pack text without separators.
    """

    def __init__(self, chars: Sequence[str]):
        """Builds the tokenizer from a sequence of distinct single characters (sorted here)."""
        chars = sorted(set(chars))
        if not chars or any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer needs a non-empty set of single characters")
        self._chars = chars
        self.mask_char = next((c for c in CHAR_MASKS if c not in chars), CHAR_MASKS[0])
        self._index = {c: i for i, c in enumerate(chars)}
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.int64)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Vocabulary = every character appearing in ``texts``."""
        seen: set[str] = set()
        for t in texts:
            seen.update(t)
        return cls(sorted(seen))

    @property
    def chars(self) -> list[str]:
        """The characters, in id order."""
        return list(self._chars)

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self._chars)

    bos_id = None
    eos_id = None
    pad_id = None

    def encode(self, text: str) -> list[int]:
        """One id per character; an unseen character raises ValueError."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Vectorised ``encode`` returning an int32 array (fast for whole books)."""
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._codepoints, cps)
        pos = np.minimum(pos, len(self._codepoints) - 1)
        bad = self._codepoints[pos] != cps
        if bad.any():
            unknown = sorted({chr(c) for c in cps[bad]})
            raise ValueError(f"characters not in the CharTokenizer vocabulary: {unknown[:20]}")
        return pos.astype(np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Concatenated characters; ids ``>= vocab_size`` (mask) render as ``self.mask_char``, a
        character the corpus does not hold (``'█'`` unless it does)."""
        return "".join(
            self._chars[i] if i < len(self._chars) else self.mask_char for i in _as_id_list(ids)
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as a json list of characters."""
        Path(path).write_text(json.dumps({"chars": self._chars}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Reads a vocabulary written by ``save``."""
        return cls(json.loads(Path(path).read_text())["chars"])


class IntegerTokenizer:
    """Ids written as space-separated integers; for data that is not text (synthetic, images)."""

    def __init__(self, vocab_size: int):
        """``vocab_size`` is the number K of clean classes."""
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self._vocab_size = int(vocab_size)

    @property
    def vocab_size(self) -> int:
        """Number K of clean classes."""
        return self._vocab_size

    bos_id = None
    eos_id = None
    pad_id = None

    def encode(self, text: str) -> list[int]:
        """Parses space-separated integers, each in ``0 .. K-1``."""
        ids = [int(s) for s in text.split()]
        if any(not 0 <= i < self._vocab_size for i in ids):
            raise ValueError(f"ids must lie in [0, {self._vocab_size}), got {ids[:20]}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Space-separated integers; ids ``>= K`` (mask) render as ``'_'``."""
        return " ".join(str(i) if i < self._vocab_size else CHAR_MASK for i in _as_id_list(ids))


def _spm():
    """Imports sentencepiece lazily (it is only needed by the sentencepiece tokenizer)."""
    import sentencepiece

    return sentencepiece


def _vocab_size_error(err: Exception, vocab_size: int) -> ValueError | None:
    """sentencepiece's vocabulary-size failures as a ValueError whose advice points the right
    way: 'smaller than required_chars. V vs N' (too small: raise it to at least N) or 'too high
    (V). Please set it to a value <= M' (too large: lower it to at most M); None otherwise."""
    text = str(err)
    small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", text)
    if small:
        return ValueError(
            f"config.data.vocab_size={vocab_size} is too small for this corpus: its characters "
            f"and the special pieces need {small.group(2)}; raise config.data.vocab_size to at "
            f"least {small.group(2)}")
    large = re.search(r"<= (\d+)", text)
    if "too high" in text or large:
        bound = f" to at most {large.group(1)}" if large else ""
        return ValueError(f"config.data.vocab_size={vocab_size} is too large for this corpus; "
                          f"lower it{bound}")
    if "Vocabulary size" in text or "vocab_size" in text:
        return ValueError(f"config.data.vocab_size={vocab_size} does not fit this corpus: "
                          f"{' '.join(text.split())[:300]}")
    return None


class SentencePieceTokenizer:
    """A sentencepiece model; pieces are the K clean classes (pad=0, unk=1, bos=2, eos=3)."""

    def __init__(self, model_proto: bytes):
        """Wraps a serialized sentencepiece ``ModelProto``."""
        self._proto = bytes(model_proto)
        self._sp = _spm().SentencePieceProcessor(model_proto=self._proto)

    @property
    def fingerprint(self) -> str:
        """BLAKE2b-128 of the model proto: equal for equal models (the key of encoded corpora in
        ``text_memo.TEXT_MEMO``)."""
        return hashlib.blake2b(self._proto, digest_size=16).hexdigest()

    def __getstate__(self) -> dict[str, bytes]:
        """Pickles as the model proto (for worker processes)."""
        return {"proto": self._proto}

    def __setstate__(self, state: dict[str, bytes]) -> None:
        """Rebuilds the processor from the pickled proto."""
        self.__init__(state["proto"])

    @classmethod
    def load(cls, path: str | os.PathLike) -> SentencePieceTokenizer:
        """Reads a ``.model`` file."""
        return cls(Path(path).read_bytes())

    def save(self, path: str | os.PathLike) -> None:
        """Writes the ``.model`` file."""
        Path(path).write_bytes(self._proto)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int,
        model_type: str = "bpe",
        max_sentences: int = 2_000_000,
        seed: int = 0,
    ) -> SentencePieceTokenizer:
        """Trains on ``texts`` (split into lines; newline becomes its own piece).

        Normalization is the identity and whitespace is kept as is, so decoding inverts
        encoding for every character seen in training. ``vocab_size`` includes the four
        special pieces. A vocabulary too small (fewer pieces than the corpus's characters) or too
        large for the corpus raises ValueError saying which, and the bound.
        """
        spm = _spm()
        lines = [line for t in texts for line in t.split("\n") if line]
        if not lines:
            raise ValueError("cannot train sentencepiece on an empty corpus")
        if hasattr(spm, "set_random_generator_seed"):
            spm.set_random_generator_seed(seed)
        writer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines),
                model_writer=writer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=1.0,
                pad_id=0,
                unk_id=1,
                bos_id=2,
                eos_id=3,
                user_defined_symbols=["\n"],
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                input_sentence_size=max_sentences,
                shuffle_input_sentence=True,
                max_sentence_length=1 << 16,
                minloglevel=2,
            )
        except RuntimeError as e:
            better = _vocab_size_error(e, vocab_size)
            if better is None:
                raise
            raise better from e
        return cls(writer.getvalue())

    @classmethod
    def train_or_load(
        cls,
        texts: Sequence[str],
        *,
        vocab_size: int,
        cache_dir: str | os.PathLike,
        model_type: str = "bpe",
    ) -> SentencePieceTokenizer:
        """Loads the cached model for (corpus, settings) from ``cache_dir``, training it if absent.

        The cache key hashes every text and the settings, so a changed corpus or vocabulary
        size trains a new model; the file is written atomically (safe with several processes).
        """
        settings = {"vocab_size": vocab_size, "model_type": model_type, "v": SPM_SPEC_VERSION}
        key = corpus_fingerprint(texts, settings)
        path = Path(cache_dir).expanduser() / "sentencepiece" / f"spm-{key}.model"
        if path.exists():
            return cls.load(path)
        tok = cls.train(texts, vocab_size=vocab_size, model_type=model_type)
        _atomic_write_bytes(path, tok._proto)
        return tok

    @property
    def vocab_size(self) -> int:
        """Number of pieces, specials included."""
        return int(self._sp.get_piece_size())

    @property
    def bos_id(self) -> int | None:
        """BOS piece id (2), or None if the model has none."""
        return _nonneg_or_none(self._sp.bos_id())

    @property
    def eos_id(self) -> int | None:
        """EOS piece id (3), or None if the model has none."""
        return _nonneg_or_none(self._sp.eos_id())

    @property
    def pad_id(self) -> int | None:
        """PAD piece id (0), or None if the model has none."""
        return _nonneg_or_none(self._sp.pad_id())

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text`` without BOS/EOS."""
        return list(self._sp.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` over many texts (multi-threaded inside sentencepiece)."""
        return [list(x) for x in self._sp.encode(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; control pieces vanish and ids ``>= K`` render as ``'[MASK]'``."""
        runs = _split_masked_runs(_as_id_list(ids), self.vocab_size)
        return "".join(PIECE_MASK if r is None else self._sp.decode(r) for r in runs)


class HuggingFaceTokenizer:
    """A pretrained Hugging Face tokenizer by name; ``transformers`` is imported on first use.

    BOS falls back to the CLS token and EOS to the SEP token (BERT style), as in the papers'
    LM1B setup; GPT-2 has a single ``<|endoftext|>`` id that serves as BOS and EOS.
    """

    def __init__(self, name: str):
        """``name``: a hub name or local path for ``transformers.AutoTokenizer``."""
        try:
            import transformers
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"this dataset was tokenized with the Hugging Face tokenizer {name!r}; "
                "`pip install transformers` to decode it"
            ) from e
        self.name = name
        self._tok = transformers.AutoTokenizer.from_pretrained(name)

    @property
    def vocab_size(self) -> int:
        """Size of the full vocabulary, added tokens included."""
        return len(self._tok)

    @property
    def bos_id(self) -> int | None:
        """BOS id (or CLS for BERT-style tokenizers)."""
        t = self._tok
        return t.bos_token_id if t.bos_token_id is not None else t.cls_token_id

    @property
    def eos_id(self) -> int | None:
        """EOS id (or SEP for BERT-style tokenizers)."""
        t = self._tok
        return t.eos_token_id if t.eos_token_id is not None else t.sep_token_id

    @property
    def pad_id(self) -> int | None:
        """PAD id, or None (GPT-2)."""
        return self._tok.pad_token_id

    def encode(self, text: str) -> list[int]:
        """Ids without special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` over many texts (fast tokenizers batch in Rust)."""
        return [list(x) for x in self._tok(list(texts), add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ids ``>= K`` render as ``'[MASK]'``."""
        runs = _split_masked_runs(_as_id_list(ids), self.vocab_size)
        return "".join(PIECE_MASK if r is None else self._tok.decode(r) for r in runs)


def encode_documents(tokenizer: Tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """Encodes each text into an int32 array, using a tokenizer's fast path when it has one."""
    if hasattr(tokenizer, "encode_array"):
        return [tokenizer.encode_array(t) for t in texts]
    if hasattr(tokenizer, "encode_batch"):
        return [np.asarray(x, dtype=np.int32) for x in tokenizer.encode_batch(texts)]
    return [np.asarray(tokenizer.encode(t), dtype=np.int32) for t in texts]


def encode_corpus(tokenizer: Tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """`encode_documents` of a whole in-memory corpus, computed once per process: with a
    tokenizer that has a ``fingerprint`` (sentencepiece, about a second on Shakespeare) the
    result is kept in ``text_memo.TEXT_MEMO`` under (fingerprint, the texts' digest), read-only,
    so the train, eval and sample modes of one process encode a corpus once."""
    fingerprint = getattr(tokenizer, "fingerprint", None)
    if fingerprint is None:
        return encode_documents(tokenizer, texts)
    return text_memo.TEXT_MEMO.get_or_compute(
        ("encode_corpus", fingerprint, corpus_fingerprint(texts)),
        lambda: encode_documents(tokenizer, texts), size=lambda docs: sum(map(len, docs)))


def save_tokenizer(tokenizer: Tokenizer, directory: str | os.PathLike) -> dict[str, Any]:
    """Writes what is needed to rebuild ``tokenizer`` into ``directory``; returns its json spec."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, CharTokenizer):
        tokenizer.save(directory / "tokenizer.json")
        return {"type": "char", "file": "tokenizer.json"}
    if isinstance(tokenizer, SentencePieceTokenizer):
        tokenizer.save(directory / "tokenizer.model")
        return {"type": "sentencepiece", "file": "tokenizer.model"}
    if isinstance(tokenizer, HuggingFaceTokenizer):
        return {"type": "huggingface", "name": tokenizer.name}
    if isinstance(tokenizer, IntegerTokenizer):
        return {"type": "integer", "vocab_size": tokenizer.vocab_size}
    raise TypeError(f"cannot save a tokenizer of type {type(tokenizer).__name__}")


def load_tokenizer(spec: dict[str, Any], directory: str | os.PathLike) -> Tokenizer:
    """Rebuilds a tokenizer from a spec returned by ``save_tokenizer`` and its directory."""
    directory = Path(directory)
    kind = spec.get("type")
    if kind == "char":
        return CharTokenizer.load(directory / spec["file"])
    if kind == "sentencepiece":
        return SentencePieceTokenizer.load(directory / spec["file"])
    if kind == "huggingface":
        return HuggingFaceTokenizer(spec["name"])
    if kind == "integer":
        return IntegerTokenizer(spec["vocab_size"])
    raise ValueError(
        f"unknown tokenizer type {kind!r}; expected 'char', 'sentencepiece', 'huggingface' "
        "or 'integer'"
    )


def corpus_fingerprint(texts: Iterable[str], settings: dict[str, Any] | None = None) -> str:
    """A hex digest of the texts (order and boundaries included) and of ``settings``."""
    h = hashlib.sha256()
    h.update(json.dumps(settings or {}, sort_keys=True).encode())
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:20]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _nonneg_or_none(i: int) -> int | None:
    """sentencepiece reports absent special ids as -1."""
    return int(i) if i >= 0 else None


__all__ = [
    "CharTokenizer",
    "HuggingFaceTokenizer",
    "IntegerTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "corpus_fingerprint",
    "encode_corpus",
    "encode_documents",
    "load_tokenizer",
    "save_tokenizer",
]
