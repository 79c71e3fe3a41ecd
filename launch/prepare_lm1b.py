"""Prepare LM1B (One Billion Word) for ``config.data.name = 'lm1b'`` (needs internet).

    pip install datasets transformers
    python launch/prepare_lm1b.py --data_dir=DATA_DIR [--tokenizer=bert-base-uncased]

Downloads ``billion-word-benchmark/lm1b`` from the Hugging Face hub, tokenizes every sentence
(``bert-base-uncased`` by default, as in D3PM/MDLM; ``--tokenizer=sentencepiece`` trains a BPE of
``--vocab_size`` on the first ``--sentencepiece_documents`` training sentences instead) and
writes ``DATA_DIR/lm1b/`` in the format of ``discrete_diffusion.data.array_records``: ``train``
is the hub's train split and ``validation`` its test split (the papers' evaluation set). Each
sentence is one document; padding (``packing='pad'``, seq_len 128) or packing is chosen at
training time. Copy the folder to the training machines and set ``config.data.data_dir``.

Offline trial: ``--input_jsonl=TRAIN.jsonl,VALID.jsonl`` reads local jsonl files (field ``text``);
a line that cannot be decoded is named (file, line, byte offset), or skipped with a warning with
``--on_bad_document=skip`` (see ``discrete_diffusion.data.local_text``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from discrete_diffusion.data import local_text, prepare, prepared  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data_dir", required=True, help="writes DATA_DIR/lm1b/")
    p.add_argument(
        "--tokenizer", default="bert-base-uncased", help="'sentencepiece' or a Hugging Face name"
    )
    p.add_argument("--vocab_size", type=int, default=8192, help="sentencepiece only")
    p.add_argument("--sentencepiece_documents", type=int, default=1_000_000)
    p.add_argument("--max_documents", type=int, default=None, help="first N of each split")
    p.add_argument("--num_proc", type=int, default=8, help="tokenizer processes")
    p.add_argument("--hf_name", default="billion-word-benchmark/lm1b")
    p.add_argument("--input_jsonl", default=None, help="TRAIN.jsonl,VALID.jsonl (local)")
    local_text.add_flags(p)
    return p.parse_args(argv)


def _jsonl(path: str, args: argparse.Namespace) -> list[str]:
    """The ``text`` field of every line of a jsonl file (bad lines: see ``local_text``)."""
    return local_text.read_jsonl(path, local_text.options_from_flags(args))


def load_splits(args: argparse.Namespace) -> dict[str, Iterable[str]]:
    """``{'train': ..., 'validation': ...}`` iterables of sentences."""
    if args.input_jsonl:
        train_path, valid_path = args.input_jsonl.split(",")
        splits: dict[str, Iterable[str]] = {
            "train": _jsonl(train_path, args),
            "validation": _jsonl(valid_path, args),
        }
    else:
        import datasets

        ds = datasets.load_dataset(args.hf_name, num_proc=args.num_proc)
        splits = {
            "train": (b for batch in ds["train"].iter(batch_size=1000) for b in batch["text"]),
            "validation": (b for batch in ds["test"].iter(batch_size=1000) for b in batch["text"]),
        }
    if args.max_documents is not None:
        splits = {k: itertools.islice(v, args.max_documents) for k, v in splits.items()}
    return splits


def main(argv: Sequence[str] | None = None) -> None:
    """Downloads, tokenizes and writes LM1B."""
    args = parse_args(argv)
    splits = load_splits(args)
    sample: Iterable[str] = ()
    if args.tokenizer == "sentencepiece":  # a second, independent pass over the train split
        sample = itertools.islice(iter(load_splits(args)["train"]), args.sentencepiece_documents)
    tokenizer = prepare.make_tokenizer(args.tokenizer, sample, vocab_size=args.vocab_size)
    out = prepared.dataset_dir("lm1b", args.data_dir)
    meta = prepare.prepare_text_dataset(
        out,
        splits,
        tokenizer,
        num_proc=args.num_proc,
        extra_metadata={"source": args.input_jsonl or args.hf_name, "validation": "test split"},
    )
    print(json.dumps(meta["splits"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
