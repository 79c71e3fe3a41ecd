"""Prepare OpenWebText for ``config.data.name = 'openwebtext'`` (needs internet).

    pip install datasets transformers
    python launch/prepare_openwebtext.py --data_dir=DATA_DIR [--tokenizer=gpt2] [--num_proc=16]

Downloads ``Skylion007/openwebtext`` from the Hugging Face hub, tokenizes every document (GPT-2
tokenizer by default, as in SEDD/MDLM; ``--tokenizer=sentencepiece`` trains a BPE of
``--vocab_size`` on the first ``--sentencepiece_documents`` training documents instead) and
writes ``DATA_DIR/openwebtext/`` in the format of ``discrete_diffusion.data.array_records``.
The validation split is the last 100,000 documents (``--num_eval_documents``), the rest is
train. Copy the folder to the training machines and set ``config.data.data_dir=DATA_DIR``.

Offline trial: ``--input_jsonl=FILE`` reads documents (field ``text``) from a local jsonl file;
a line that cannot be decoded is named (file, line, byte offset), or skipped with a warning with
``--on_bad_document=skip`` (see ``discrete_diffusion.data.local_text``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discrete_diffusion.data import local_text, prepare, prepared  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data_dir", required=True, help="writes DATA_DIR/openwebtext/")
    p.add_argument("--tokenizer", default="gpt2", help="'sentencepiece' or a Hugging Face name")
    p.add_argument("--vocab_size", type=int, default=32768, help="sentencepiece only")
    p.add_argument("--sentencepiece_documents", type=int, default=200_000)
    p.add_argument("--num_eval_documents", type=int, default=100_000)
    p.add_argument("--max_documents", type=int, default=None, help="use only the first N")
    p.add_argument("--num_proc", type=int, default=8, help="tokenizer processes")
    p.add_argument("--hf_name", default="Skylion007/openwebtext")
    p.add_argument("--input_jsonl", default=None, help="local jsonl instead of the hub")
    local_text.add_flags(p)
    return p.parse_args(argv)


def load_texts(args: argparse.Namespace) -> Sequence[str]:
    """All documents, as a random-access sequence of strings."""
    if args.input_jsonl:
        texts = local_text.read_jsonl(args.input_jsonl, local_text.options_from_flags(args))
    else:
        import datasets

        texts = _Column(datasets.load_dataset(args.hf_name, split="train", num_proc=args.num_proc))
    if args.max_documents is not None:
        texts = texts[: args.max_documents]
    return texts


class _Column:
    """Lazy ``text`` column of a Hugging Face dataset (never materialised in memory)."""

    def __init__(self, ds, start: int = 0, stop: int | None = None):
        """Rows ``start .. stop-1`` of ``ds``."""
        self._ds, self._start = ds, start
        self._stop = len(ds) if stop is None else stop

    def __len__(self) -> int:
        """Number of documents."""
        return self._stop - self._start

    def __getitem__(self, sl: slice) -> _Column:
        """A contiguous sub-range (slices only)."""
        start, stop, _ = sl.indices(len(self))
        return _Column(self._ds, self._start + start, self._start + stop)

    def __iter__(self) -> Iterator[str]:
        """The documents in order, read in batches."""
        part = self._ds.select(range(self._start, self._stop))
        for batch in part.iter(batch_size=1000):
            yield from batch["text"]


def main(argv: Sequence[str] | None = None) -> None:
    """Downloads, splits, tokenizes and writes OpenWebText."""
    args = parse_args(argv)
    texts = load_texts(args)
    n_eval = args.num_eval_documents
    if len(texts) <= n_eval:
        raise SystemExit(f"only {len(texts)} documents; need more than --num_eval_documents")
    train, valid = texts[: len(texts) - n_eval], texts[len(texts) - n_eval :]
    sample = itertools.islice(iter(train), args.sentencepiece_documents)
    tokenizer = prepare.make_tokenizer(args.tokenizer, sample, vocab_size=args.vocab_size)
    out = prepared.dataset_dir("openwebtext", args.data_dir)
    meta = prepare.prepare_text_dataset(
        out,
        {"train": train, "validation": valid},
        tokenizer,
        num_proc=args.num_proc,
        extra_metadata={
            "source": args.input_jsonl or args.hf_name,
            "validation": f"last {n_eval} documents",
        },
    )
    print(json.dumps({k: v for k, v in meta["splits"].items()}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
