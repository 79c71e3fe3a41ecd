"""``get_data(config)``: validated config -> tokenizer, train iterator and eval passes.

Config fields (``config.data.<field>``, read with ``.get`` so all but ``name`` are optional):

============================ ================================================================
``name``                     'shakespeare' | 'synthetic' | 'local' | 'lm1b' | 'openwebtext' |
                             'digits' | 'mnist' | 'checkerboard' | 'pair_hash' (required)
``source``                   'files' (default: the dataset's own files) | 'tfds' (lm1b,
                             openwebtext: a TFDS dataset's ArrayRecord data source, never
                             downloaded, tokenized by the run; ``tfds_source``)
``tfds_name``                None = ``name``: the TFDS dataset ('lm1b', or any text dataset)
``tfds_train_split``         'train'; ``tfds_eval_split``: 'test' (the held-out split)
``tokenizer``                None = the dataset's default. Text ('shakespeare', 'local'):
                             'char' (default) | 'sentencepiece'; source 'tfds': 'sentencepiece'
                             (default) | 'char'. Others: 'none' (their ids are
                             given: generated, pixels, or pre-tokenized at preparation)
``vocab_size``               4096: sentencepiece vocabulary (specials included)
``seq_len``                  None = default: shakespeare 256, local 256, synthetic 64,
                             lm1b 128, openwebtext 1024, digits 64 (fixed), mnist 784 (fixed),
                             checkerboard 2 (fixed: the x bin and the y bin, ``checkerboard``),
                             pair_hash 16 (even: the x half and its hash, ``pair_hash``)
``packing``                  'pack' (default) | 'pad'; text only (see ``packing``)
``add_bos_eos``              None = True when the tokenizer has BOS/EOS (sentencepiece and
                             prepared data), False for characters
``data_dir``                 'local': the folder of .txt/.jsonl files (required);
                             lm1b/openwebtext: parent of ``<name>/`` (default
                             ``~/.cache/discrete_diffusion/datasets``); source 'tfds': TFDS's
                             data_dir (a folder or a bucket; None: TFDS's default)
``cache_dir``                '~/.cache/discrete_diffusion': trained sentencepiece models
``text_field``               'text': field of a .jsonl record holding the document
``eval_fraction``            0.05: 'local' without train/ and validation/ subfolders
``on_bad_document``          'error' (default) | 'skip': 'local' files or .jsonl lines that
                             cannot be decoded (not UTF-8, not a JSON object, no string
                             ``text_field``) or exceed ``max_document_bytes``: raise naming the
                             file, line and byte offset, or skip them with a warning
``on_empty_document``        'skip' (default, with a warning) | 'error': empty 'local' documents
``max_document_bytes``       1 GiB (None: no limit): longest 'local' .txt file / .jsonl line
``heldout_plays``            ('macbeth', 'the-tempest'): Shakespeare validation plays
``seed``                     0: shuffling and synthetic generation
``eval_batch_size``          None = ``config.training.batch_size``
``eval_max_batches``         None: cap on the global batches of one eval pass
``eval_pad_last``            True: pad the last partial eval batch with rows marked
                             ``valid=False``, which evaluation ignores (False: drop it)
``num_threads``, ``prefetch`` 4, 8: grain reader threads and batches buffered ahead
``synthetic_vocab_size``     32: K of the synthetic Markov chain (its states are its tokens)
``synthetic_support``        4: successors per token (entropy rate <= log of it)
``synthetic_concentration``  0.5: Dirichlet concentration of each transition row
``num_train_sequences``      100_000: synthetic (checkerboard, pair_hash) training sequences
``num_eval_sequences``       10_000: synthetic (checkerboard, pair_hash) validation sequences
``pair_hash_vocab_size``     16: K of ``pair_hash`` (x uniform on K, y_i = f(x_i, x_{i+1}))
``pair_hash_direction``      'forward' (x half first) | 'reversed' (the sequence reversed)
``num_states``               unused by the Markov chain; if set it must equal
                             ``synthetic_vocab_size``
============================ ================================================================

The global batch size is ``config.training.batch_size``; each process reads
``batch_size // process_count`` examples of it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import grain
import ml_collections
import numpy as np

from discrete_diffusion.data import (
    checkerboard,
    local_text,
    packing,
    pair_hash,
    pipeline,
    prepared,
    shakespeare,
    synthetic,
    tfds_source,
    words,
)
from discrete_diffusion.data import images as images_lib
from discrete_diffusion.data import tokenizers as tok_lib

TEXT = ("shakespeare", "local")
PREPARED = ("lm1b", "openwebtext")
SOURCES = ("files", "tfds")  # config.data.source; 'tfds' for PREPARED names (data/tfds_source.py)
IMAGES = ("digits", "mnist")
DATASETS = ("shakespeare", "synthetic", "local", *PREPARED, *IMAGES, "checkerboard", "pair_hash")
DEFAULT_SEQ_LEN = {
    "shakespeare": 256,
    "local": 256,
    "synthetic": 64,
    "lm1b": 128,
    "openwebtext": 1024,
    "digits": 64,
    "mnist": 784,
    "checkerboard": 2,
    "pair_hash": 16,
}
DEFAULT_DATA_DIR = "~/.cache/discrete_diffusion/datasets"
DEFAULT_CACHE_DIR = "~/.cache/discrete_diffusion"


@dataclasses.dataclass
class DataBundle:
    """Everything training and evaluation need from the data.

    ``train_iter`` yields this process's share of each global batch forever (dicts of numpy:
    ``'tokens'`` int32 ``[B, L]``, plus ``'label'`` int32 ``[B]`` for images or ``'mask'`` bool
    ``[B, L]`` for padded text) and supports ``get_state``/``set_state``. ``eval_batches(max_batches
    =None)`` returns a fresh finite pass over the validation split. Every batch of both is checked
    on the host (token ids in ``[0, num_classes)``, labels in ``[0, num_labels)``), so a bad id
    raises ValueError here rather than reaching the jitted step. ``num_classes`` is K (the
    mask id of the masked process); ``num_labels`` is the number of class labels (images) or
    None. ``info`` holds dataset facts (sizes; for synthetic data the exact ``entropy_rate``,
    ``sequence_entropy`` and the ``chain`` itself; for text read in memory, ``word_vocabulary``:
    a function returning the set of the training split's words, ``data.words.vocabulary``).
    """

    train_iter: grain.DatasetIterator
    eval_batches: Callable[..., Iterator[dict[str, np.ndarray]]]
    tokenizer: tok_lib.Tokenizer
    num_classes: int
    seq_len: int
    global_batch_size: int
    local_batch_size: int
    num_labels: int | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def default_data_config() -> ml_collections.ConfigDict:
    """A ``config.data`` holding every field with its default (``name`` = 'shakespeare')."""
    ph = ml_collections.config_dict.placeholder
    return ml_collections.ConfigDict(
        {
            "name": "shakespeare",
            "source": "files",
            "tfds_name": ph(str),
            "tfds_train_split": "train",
            "tfds_eval_split": "test",
            "tokenizer": ph(str),
            "vocab_size": 4096,
            "seq_len": ph(int),
            "packing": "pack",
            "add_bos_eos": ph(bool),
            "data_dir": ph(str),
            "cache_dir": DEFAULT_CACHE_DIR,
            "text_field": "text",
            "eval_fraction": 0.05,
            "on_bad_document": "error",
            "on_empty_document": "skip",
            "max_document_bytes": local_text.DEFAULT_MAX_DOCUMENT_BYTES,
            "heldout_plays": shakespeare.DEFAULT_HELDOUT_PLAYS,
            "seed": 0,
            "eval_batch_size": ph(int),
            "eval_max_batches": ph(int),
            "eval_pad_last": True,
            "num_threads": 4,
            "prefetch": 8,
            "synthetic_vocab_size": 32,
            "synthetic_support": 4,
            "synthetic_concentration": 0.5,
            "num_train_sequences": 100_000,
            "num_eval_sequences": 10_000,
            "pair_hash_vocab_size": 16,
            "pair_hash_direction": "forward",
            "num_states": ph(int),
        }
    )


@dataclasses.dataclass(frozen=True)
class _Settings:
    """``config.data`` after defaults and validation."""

    name: str
    tokenizer: str
    seq_len: int
    packing: str
    add_bos_eos: bool | None
    batch_size: int
    eval_batch_size: int
    eval_max_batches: int | None
    eval_pad_last: bool
    seed: int
    num_threads: int
    prefetch: int
    data: Any  # the raw config.data, for dataset-specific fields


def per_character(ev: dict[str, float], info: dict[str, Any]) -> dict[str, float]:
    """Held-out bits per character of text data, {'eval_bpc', 'eval_se_bpc'} ({} for data without
    characters): bits per token over the validation split's characters per token,

        eval_bpc = eval_bpt * validation_tokens / validation_chars

    (1 char per token for the character tokenizer, ~2.6 for a 2048-piece BPE on the plays), so
    models of different tokenizers compare on one scale."""
    chars, tokens = info.get("validation_chars"), info.get("validation_tokens")
    if not chars or not tokens or "eval_bpt" not in ev:
        return {}
    out = {"eval_bpc": float(ev["eval_bpt"]) * tokens / chars}
    if "eval_se_bpt" in ev:
        out["eval_se_bpc"] = float(ev["eval_se_bpt"]) * tokens / chars
    return out


def _int_field(data: Any, field: str, default: Any, *, minimum: int = 1) -> Any:
    """``config.data.<field>`` as an int >= minimum (None passes through if the default is)."""
    value = data.get(field, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"config.data.{field} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choice(data: Any, field: str, default: Any, allowed: tuple[str, ...]) -> str:
    """``config.data.<field>``, which must be one of ``allowed``."""
    value = data.get(field, default)
    if value is None:
        value = default
    if value not in allowed:
        raise ValueError(f"config.data.{field}={value!r} is not one of {list(allowed)}")
    return value


def _settings(config: Any) -> _Settings:
    """Reads and validates the dataset-independent fields."""
    data = config.get("data", None)
    if data is None:
        raise ValueError(
            "config.data is missing; see discrete_diffusion.data.default_data_config()"
        )
    name = data.get("name", None)
    if name not in DATASETS:
        raise ValueError(f"config.data.name={name!r} is not one of {list(DATASETS)}")
    source = _choice(data, "source", "files", SOURCES)
    if source == "tfds" and name not in PREPARED:
        raise ValueError(f"config.data.source='tfds' applies to config.data.name in {list(PREPARED)} "
                         f"(config.data.tfds_name: any TFDS text dataset), not {name!r}")
    text_tokens = name in TEXT or source == "tfds"  # tokenized by the run
    tokenizer = _choice(
        data,
        "tokenizer",
        ("char" if name in TEXT else "sentencepiece") if text_tokens else "none",
        ("char", "sentencepiece") if text_tokens else ("none",),
    )
    seq_len = _int_field(data, "seq_len", None) or DEFAULT_SEQ_LEN[name]
    if name == "checkerboard" and seq_len != 2:
        raise ValueError(f"config.data.seq_len={seq_len} does not fit checkerboard: allowed 2 "
                         "(or None)")
    if name in IMAGES and seq_len != images_lib.SEQ_LEN[name]:
        raise ValueError(
            f"config.data.seq_len={seq_len} does not fit {name} images: allowed "
            f"{images_lib.SEQ_LEN[name]} (or None)"
        )
    pack_mode = _choice(
        data, "packing", "pack", ("pack", "pad") if name in TEXT + PREPARED else ("pack",)
    )
    add_bos_eos = data.get("add_bos_eos", None)
    if add_bos_eos not in (None, True, False):
        raise ValueError(
            f"config.data.add_bos_eos must be None, True or False, got {add_bos_eos!r}"
        )
    training = config.get("training", None)
    batch_size = training.get("batch_size", None) if training is not None else None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"config.training.batch_size must be a positive integer, got {batch_size!r}"
        )
    eval_batch_size = _int_field(data, "eval_batch_size", None) or batch_size
    eval_pad_last = data.get("eval_pad_last", True)
    if eval_pad_last not in (True, False):
        raise ValueError(f"config.data.eval_pad_last must be True or False, got {eval_pad_last!r}")
    return _Settings(
        name=name,
        tokenizer=tokenizer,
        seq_len=seq_len,
        packing=pack_mode,
        add_bos_eos=add_bos_eos,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        eval_max_batches=_int_field(data, "eval_max_batches", None),
        eval_pad_last=bool(eval_pad_last),
        seed=_int_field(data, "seed", 0, minimum=0),
        num_threads=_int_field(data, "num_threads", 4),
        prefetch=_int_field(data, "prefetch", 8),
        data=data,
    )


@dataclasses.dataclass
class _Splits:
    """A dataset's examples and facts, before batching."""

    train: grain.MapDataset
    valid: grain.MapDataset
    tokenizer: tok_lib.Tokenizer
    num_classes: int
    num_labels: int | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def _check_ids(arr: np.ndarray, K: int, what: str) -> None:
    """ValueError unless every id of ``arr`` lies in ``0 .. K-1``."""
    if arr.size and (arr.min() < 0 or arr.max() >= K):
        raise ValueError(
            f"{what}: token ids must lie in [0, {K}), found [{arr.min()}, {arr.max()}]"
        )


def _specials(s: _Settings, bos: int | None, eos: int | None, default: bool) -> tuple:
    """(bos, eos) used for packing/padding, honouring ``config.data.add_bos_eos``."""
    use = default if s.add_bos_eos is None else s.add_bos_eos
    if use and bos is None and eos is None:
        raise ValueError(
            f"config.data.add_bos_eos=True but the {s.tokenizer!r} tokenizer has no BOS/EOS ids; "
            "use tokenizer='sentencepiece' or add_bos_eos=False"
        )
    return (bos, eos) if use else (None, None)


def _check_pad_fits(s: _Settings, longest: int) -> None:
    """ValueError when padding mode would leave every row with padding at the end."""
    if s.packing == "pad" and s.seq_len > longest:
        raise ValueError(
            f"config.data.seq_len={s.seq_len} is longer than any padded document allows "
            f"(longest document incl. BOS/EOS: {longest} tokens); with packing='pad' use "
            f"seq_len <= {longest}, or packing='pack'"
        )


def _text_examples(
    s: _Settings, docs: list[np.ndarray], bos: int | None, eos: int | None, pad_id: int
) -> grain.MapDataset:
    """In-memory documents -> packed or padded examples."""
    if s.packing == "pack":
        tokens = packing.pack(docs, s.seq_len, bos_id=bos, eos_id=eos)
        return grain.MapDataset.source(pipeline.ArrayExamples({"tokens": tokens}))
    tokens, mask = packing.pad(docs, s.seq_len, pad_id=pad_id, bos_id=bos, eos_id=eos)
    return grain.MapDataset.source(pipeline.ArrayExamples({"tokens": tokens, "mask": mask}))


def _text_splits(s: _Settings) -> _Splits:
    """Shakespeare or a local folder, tokenized in memory."""
    data = s.data
    if s.name == "shakespeare":
        train_txt, valid_txt = shakespeare.load_splits(
            tuple(data.get("heldout_plays", shakespeare.DEFAULT_HELDOUT_PLAYS))
        )
    else:
        folder = data.get("data_dir", None)
        if not folder:
            raise ValueError("config.data.data_dir must name the folder of .txt/.jsonl files")
        eval_fraction = data.get("eval_fraction", 0.05)
        options = local_text.ReadOptions(
            text_field=data.get("text_field", "text"),
            on_bad_document=data.get("on_bad_document", "error"),
            on_empty_document=data.get("on_empty_document", "skip"),
            max_document_bytes=data.get(
                "max_document_bytes", local_text.DEFAULT_MAX_DOCUMENT_BYTES
            ),
        )
        train_txt, valid_txt = local_text.load_splits(
            folder, eval_fraction=eval_fraction, options=options
        )
    if s.tokenizer == "char":
        tok: tok_lib.Tokenizer = tok_lib.CharTokenizer.from_texts(train_txt + valid_txt)
    else:
        tok = tok_lib.SentencePieceTokenizer.train_or_load(
            train_txt,
            vocab_size=_int_field(data, "vocab_size", 4096, minimum=8),
            cache_dir=data.get("cache_dir", DEFAULT_CACHE_DIR) or DEFAULT_CACHE_DIR,
        )
    bos, eos = _specials(s, tok.bos_id, tok.eos_id, default=s.tokenizer == "sentencepiece")
    pad_id = next((i for i in (tok.pad_id, eos) if i is not None), 0)
    train_docs = tok_lib.encode_corpus(tok, train_txt)
    valid_docs = tok_lib.encode_corpus(tok, valid_txt)
    _check_pad_fits(s, max(len(d) for d in train_docs) + packing.num_special(bos, eos))
    info = {
        "train_chars": sum(map(len, train_txt)),
        "validation_chars": sum(map(len, valid_txt)),
        "train_documents": len(train_txt),
        "validation_documents": len(valid_txt),
        "train_tokens": int(sum(map(len, train_docs))),
        "validation_tokens": int(sum(map(len, valid_docs))),
        # the training corpus's words, for the real-word fraction of samples (built on first call)
        "word_vocabulary": functools.cache(functools.partial(words.vocabulary, train_txt)),
    }
    return _Splits(
        _text_examples(s, train_docs, bos, eos, pad_id),
        _text_examples(s, valid_docs, bos, eos, pad_id),
        tok,
        tok.vocab_size,
        info=info,
    )


def _prepared_splits(s: _Settings) -> _Splits:
    """LM1B / OpenWebText from their prepared ArrayRecord folder (read lazily)."""
    data_dir = s.data.get("data_dir", None) or DEFAULT_DATA_DIR
    ds = prepared.open_prepared(s.name, data_dir)
    ids = ds.special_ids()
    bos, eos = _specials(s, ids["bos_id"], ids["eos_id"], default=True)
    pad_id = next((i for i in (ids["pad_id"], eos) if i is not None), 0)
    stores = {split: ds.documents(split) for split in prepared.REQUIRED_SPLITS}
    _check_pad_fits(s, int(stores["train"].lengths.max(initial=0)) + packing.num_special(bos, eos))

    def examples(store: Any) -> grain.MapDataset:
        return _lazy_examples(s, store, bos, eos, pad_id)

    info = {
        f"{k}_{split}": v
        for split, d in ds.metadata["splits"].items()
        for k, v in d.items()
        if k in ("num_documents", "num_tokens")
    }
    info["dataset_dir"] = str(ds.directory)
    return _Splits(
        examples(stores["train"]),
        examples(stores["validation"]),
        ds.tokenizer(),
        ds.vocab_size,
        info=info,
    )


def _lazy_examples(s: _Settings, store: Any, bos: int | None, eos: int | None,
                   pad_id: int) -> grain.MapDataset:
    """Documents read on access (`store[i]`, `store.lengths`) -> packed or padded examples."""
    if s.packing == "pack":
        rows = packing.PackedDocuments(store.__getitem__, store.lengths, s.seq_len, bos_id=bos, eos_id=eos)
        return grain.MapDataset.source(rows).map(lambda x: {"tokens": x})
    rows = packing.PaddedDocuments(
        store.__getitem__, len(store), s.seq_len, pad_id=pad_id, bos_id=bos, eos_id=eos
    )
    return grain.MapDataset.source(rows).map(lambda x: {"tokens": x[0], "mask": x[1]})


def _tfds_splits(s: _Settings) -> _Splits:
    """config.data.source='tfds': the text of a TFDS dataset's data source (data/tfds_source.py),
    tokenized by the run (as a local corpus) and packed lazily (as prepared data)."""
    data = s.data
    name = data.get("tfds_name", None) or s.name
    field = data.get("text_field", "text")
    texts = {}
    for split_field, default in (("tfds_train_split", "train"), ("tfds_eval_split", "test")):
        split = data.get(split_field, default)
        source = tfds_source.open_split(name, split, data.get("data_dir", None))
        texts[split_field] = tfds_source.TextSource(source, field, f"TFDS {name}[{split}]")
    train, valid = texts["tfds_train_split"], texts["tfds_eval_split"]
    train_txt = train.texts()
    if s.tokenizer == "char":
        tok: tok_lib.Tokenizer = tok_lib.CharTokenizer.from_texts(train_txt + valid.texts())
    else:
        tok = tok_lib.SentencePieceTokenizer.train_or_load(
            train_txt,
            vocab_size=_int_field(data, "vocab_size", 4096, minimum=8),
            cache_dir=data.get("cache_dir", DEFAULT_CACHE_DIR) or DEFAULT_CACHE_DIR,
        )
    del train_txt
    bos, eos = _specials(s, tok.bos_id, tok.eos_id, default=s.tokenizer == "sentencepiece")
    pad_id = next((i for i in (tok.pad_id, eos) if i is not None), 0)
    stores = {k: tfds_source.EncodedDocuments(v, tok) for k, v in texts.items()}
    train_docs, valid_docs = stores["tfds_train_split"], stores["tfds_eval_split"]
    _check_pad_fits(s, int(train_docs.lengths.max(initial=0)) + packing.num_special(bos, eos))
    info = {"tfds_name": name, "train_documents": len(train_docs), "validation_documents": len(valid_docs),
            "train_tokens": int(train_docs.lengths.sum()), "validation_tokens": int(valid_docs.lengths.sum())}
    return _Splits(_lazy_examples(s, train_docs, bos, eos, pad_id),
                   _lazy_examples(s, valid_docs, bos, eos, pad_id), tok, tok.vocab_size, info=info)


def _synthetic_splits(s: _Settings) -> _Splits:
    """Sequences of the seeded random Markov chain, with its exact entropies in ``info``."""
    data = s.data
    K = _int_field(data, "synthetic_vocab_size", 32, minimum=2)
    num_states = data.get("num_states", None)
    if num_states is not None and num_states != K:
        raise ValueError(
            f"config.data.num_states={num_states}: the synthetic source is a first-order Markov "
            f"chain whose states are its tokens, so num_states must be None or equal to "
            f"config.data.synthetic_vocab_size={K}"
        )
    chain, train, valid = synthetic.load_splits(
        vocab_size=K,
        seq_len=s.seq_len,
        num_train=_int_field(data, "num_train_sequences", 100_000),
        num_eval=_int_field(data, "num_eval_sequences", 10_000),
        support=_int_field(data, "synthetic_support", 4, minimum=2),
        concentration=float(data.get("synthetic_concentration", 0.5)),
        seed=s.seed,
    )
    info = {
        "chain": chain,
        "entropy_rate": chain.entropy_rate(),
        "sequence_entropy": chain.sequence_entropy(s.seq_len),
        "log_vocab_size": float(np.log(K)),
    }
    return _Splits(
        grain.MapDataset.source(pipeline.ArrayExamples({"tokens": train})),
        grain.MapDataset.source(pipeline.ArrayExamples({"tokens": valid})),
        tok_lib.IntegerTokenizer(K),
        K,
        info=info,
    )


def _checkerboard_splits(s: _Settings) -> _Splits:
    """The discretised 2-D checkerboard (``checkerboard``): pairs (x bin, y bin), exact law in
    ``info['law']``."""
    train, valid = checkerboard.load_splits(
        _int_field(s.data, "num_train_sequences", 100_000),
        _int_field(s.data, "num_eval_sequences", 10_000), seed=s.seed)
    K = checkerboard.BINS
    law = checkerboard.law()
    return _Splits(
        grain.MapDataset.source(pipeline.ArrayExamples({"tokens": train})),
        grain.MapDataset.source(pipeline.ArrayExamples({"tokens": valid})),
        tok_lib.IntegerTokenizer(K),
        K,
        info={"law": law, "sequence_entropy": float(np.log(np.count_nonzero(law)))},
    )


def _pair_hash_splits(s: _Settings) -> _Splits:
    """The ``pair_hash`` corpus (data/pair_hash.py): x half uniform, y_i = f(x_i, x_{i+1}); its
    exact entropy in ``info`` (``entropy_rate`` = log(K)/2 nats/token, ``sequence_entropy``)."""
    K = _int_field(s.data, "pair_hash_vocab_size", 16, minimum=2)
    direction = _choice(s.data, "pair_hash_direction", "forward", pair_hash.DIRECTIONS)
    pair_hash.PairHash.half(s.seq_len)  # even length, or an error naming config.data.seq_len
    corpus, train, valid = pair_hash.load_splits(
        vocab_size=K, seq_len=s.seq_len,
        num_train=_int_field(s.data, "num_train_sequences", 100_000),
        num_eval=_int_field(s.data, "num_eval_sequences", 10_000), seed=s.seed,
        direction=direction)
    return _Splits(
        grain.MapDataset.source(pipeline.ArrayExamples({"tokens": train})),
        grain.MapDataset.source(pipeline.ArrayExamples({"tokens": valid})),
        tok_lib.IntegerTokenizer(K),
        K,
        info={"pair_hash": corpus, "entropy_rate": corpus.entropy_rate(s.seq_len),
              "sequence_entropy": corpus.sequence_entropy(s.seq_len)},
    )


def _image_splits(s: _Settings) -> _Splits:
    """Digits or binarised MNIST as flattened pixel sequences with labels."""
    train, valid = images_lib.load_splits(s.name)
    K = images_lib.NUM_CLASSES[s.name]
    for split, arr in (("train", train.tokens), ("validation", valid.tokens)):
        _check_ids(arr, K, f"{s.name} {split}")

    def examples(split: images_lib.ImageSplit) -> grain.MapDataset:
        arrays = {"tokens": split.tokens, "label": split.labels}
        return grain.MapDataset.source(pipeline.ArrayExamples(arrays))

    info = {
        "image_shape": (8, 8) if s.name == "digits" else (28, 28),
        "num_train": len(train.labels),
        "num_validation": len(valid.labels),
    }
    return _Splits(
        examples(train),
        examples(valid),
        tok_lib.IntegerTokenizer(K),
        K,
        num_labels=images_lib.NUM_LABELS,
        info=info,
    )


def _process_layout(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """Explicit (index, count), or jax's when not given."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} must lie in [0, {process_count})")
    return int(process_index), int(process_count)


def _no_eval_batch_message(num_valid: int, s: _Settings) -> str:
    """Why no eval batch can be formed, with advice that applies to the settings in force."""
    if num_valid == 0:  # eval_pad_last cannot help: there is nothing to pad
        return (f"the validation split has no example of config.data.seq_len={s.seq_len} "
                "tokens (its text is shorter than one row); lower config.data.seq_len, or give "
                "the validation split more text (config.data.eval_fraction for a local folder)")
    return (f"the validation split has {num_valid} examples, fewer than one eval batch of "
            f"{s.eval_batch_size} (config.data.eval_batch_size, default "
            "config.training.batch_size); lower it or set config.data.eval_pad_last=True")


def get_data(
    config: Any, *, process_index: int | None = None, process_count: int | None = None
) -> DataBundle:
    """Builds the data of ``config.data`` (fields in the module docstring) for this process.

    ``process_index``/``process_count`` default to ``jax.process_index()``/``process_count()``;
    pass them explicitly to simulate several hosts. Bad settings raise ValueError naming the
    field and the allowed values; an unprepared LM1B/OpenWebText raises FileNotFoundError with
    the command that prepares it.
    """
    s = _settings(config)
    p_index, p_count = _process_layout(process_index, process_count)
    pipeline.check_batch_size(s.batch_size, p_count)
    if s.eval_batch_size % p_count:
        raise ValueError(
            f"config.data.eval_batch_size={s.eval_batch_size} must be divisible by the number "
            f"of processes ({p_count})"
        )
    if s.name in TEXT:
        splits = _text_splits(s)
    elif s.name in PREPARED:
        splits = _tfds_splits(s) if s.data.get("source", "files") == "tfds" else _prepared_splits(s)
    elif s.name == "synthetic":
        splits = _synthetic_splits(s)
    elif s.name == "checkerboard":
        splits = _checkerboard_splits(s)
    elif s.name == "pair_hash":
        splits = _pair_hash_splits(s)
    else:
        splits = _image_splits(s)
    train_iter = pipeline.train_iterator(
        splits.train,
        global_batch_size=s.batch_size,
        seed=s.seed,
        process_index=p_index,
        process_count=p_count,
        num_threads=s.num_threads,
        prefetch=s.prefetch,
        num_classes=splits.num_classes,
        num_labels=splits.num_labels,
    )

    n_eval = pipeline.num_eval_batches(
        len(splits.valid),
        s.eval_batch_size,
        pad_last=s.eval_pad_last,
        max_batches=s.eval_max_batches,
    )
    if n_eval == 0:
        raise ValueError(_no_eval_batch_message(len(splits.valid), s))

    def eval_batches(max_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """A fresh pass over the validation split (``max_batches`` overrides the config cap)."""
        return pipeline.eval_iterator(
            splits.valid,
            global_batch_size=s.eval_batch_size,
            process_index=p_index,
            process_count=p_count,
            max_batches=s.eval_max_batches if max_batches is None else max_batches,
            pad_last=s.eval_pad_last,
            num_threads=s.num_threads,
            prefetch=s.prefetch,
            num_classes=splits.num_classes,
            num_labels=splits.num_labels,
        )

    info = {
        "name": s.name,
        "num_train_examples": len(splits.train),
        "num_eval_examples": len(splits.valid),
        "num_eval_batches": n_eval,
        "process_index": p_index,
        "process_count": p_count,
        **splits.info,
    }
    return DataBundle(
        train_iter=train_iter,
        eval_batches=eval_batches,
        tokenizer=splits.tokenizer,
        num_classes=splits.num_classes,
        seq_len=s.seq_len,
        global_batch_size=s.batch_size,
        local_batch_size=s.batch_size // p_count,
        num_labels=splits.num_labels,
        info=info,
    )
