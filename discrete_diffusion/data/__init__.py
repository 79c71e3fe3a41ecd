"""Data for discrete diffusion: sources, tokenizers, sequence construction and grain pipelines.

Entry point: ``get_data(config) -> DataBundle`` (see ``bundle`` for every config field).
Convention: tokenizers hold the K clean classes ``0 .. K-1``; the diffusion mask id is K and
belongs to the process, never to a tokenizer.
"""

from discrete_diffusion.data.array_records import TokenizedDataset, write_tokenized_dataset
from discrete_diffusion.data.bundle import DATASETS, DataBundle, default_data_config, get_data, per_character
from discrete_diffusion.data.synthetic import MarkovChain
from discrete_diffusion.data.tokenizers import (
    CharTokenizer,
    IntegerTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
)

__all__ = [
    "DATASETS",
    "CharTokenizer",
    "DataBundle",
    "IntegerTokenizer",
    "MarkovChain",
    "SentencePieceTokenizer",
    "TokenizedDataset",
    "Tokenizer",
    "default_data_config",
    "get_data",
    "per_character",
    "write_tokenized_dataset",
]
