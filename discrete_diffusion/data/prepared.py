"""Real-scale text datasets prepared offline: LM1B and OpenWebText.

They are read from ``<config.data.data_dir>/<name>/`` in the format of ``array_records``
(pre-tokenized documents in ArrayRecord files + ``metadata.json``), written by:

    python launch/prepare_lm1b.py --data_dir=DATA_DIR         # train / validation(= test split)
    python launch/prepare_openwebtext.py --data_dir=DATA_DIR  # validation = last 100k documents

on a machine with internet (they download from the Hugging Face hub), then copied to the
training machines. Nothing here touches the network: a missing dataset raises
FileNotFoundError with the command to run.
"""

from __future__ import annotations

import os
from pathlib import Path

from discrete_diffusion.data.array_records import METADATA, TokenizedDataset

PREPARE_SCRIPTS = {"lm1b": "launch/prepare_lm1b.py", "openwebtext": "launch/prepare_openwebtext.py"}
REQUIRED_SPLITS = ("train", "validation")


def dataset_dir(name: str, data_dir: str | os.PathLike) -> Path:
    """Folder of prepared dataset ``name`` under ``data_dir``."""
    return Path(data_dir).expanduser() / name


def prepare_command(name: str, data_dir: str | os.PathLike) -> str:
    """The shell command that prepares ``name`` into ``data_dir``."""
    return f"python {PREPARE_SCRIPTS[name]} --data_dir={data_dir}"


def open_prepared(name: str, data_dir: str | os.PathLike) -> TokenizedDataset:
    """Opens prepared dataset ``name``; FileNotFoundError explains how to prepare it."""
    if name not in PREPARE_SCRIPTS:
        raise ValueError(
            f"unknown prepared dataset {name!r}; expected one of {sorted(PREPARE_SCRIPTS)}"
        )
    folder = dataset_dir(name, data_dir)
    if not (folder / METADATA).exists():
        raise FileNotFoundError(
            f"{name} is not prepared: {folder / METADATA} does not exist "
            f"(config.data.data_dir={str(data_dir)!r}). On a machine with internet run\n"
            f"    pip install datasets transformers && {prepare_command(name, data_dir)}\n"
            f"and copy the folder {folder} to this machine (same config.data.data_dir)."
        )
    ds = TokenizedDataset(folder)
    missing = [s for s in REQUIRED_SPLITS if s not in ds.splits]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks the split(s) {missing}; prepare it again with "
            f"`{prepare_command(name, data_dir)}`"
        )
    return ds
