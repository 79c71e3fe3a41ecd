"""The README and docs/*.md point only at things that exist.

Checked in README.md and every docs/*.md:
- every relative markdown link `[text](target)` (the `#anchor` dropped) resolves from the file's
  folder;
- every repository path the text names, a word starting with one of the repository's top-level
  folders (`discrete_diffusion/`, `configs/`, `benchmarks/`, `tests/`, `launch/`, `notebooks/`,
  `docs/`, `.ci/`) or with a package folder (`sampling/`, `models/`, ... read under
  `discrete_diffusion/`), exists; `tests/x.py::test_name` is checked as `tests/x.py`.

Not checked: outputs of runs (`runs/...`, `workdir/...`) and paths written as templates, i.e.
followed by `{`, `*` or `<` (`configs/shakespeare_{absorbing,uniform}.py`, `configs/<name>.py`).
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP_FOLDERS = ("discrete_diffusion", "configs", "benchmarks", "tests", "launch", "notebooks", "docs",
               ".ci")
PACKAGE_FOLDERS = ("data", "evaluation", "methods", "models", "sampling", "testing", "training")

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FOLDERS = "|".join(re.escape(f) for f in TOP_FOLDERS + PACKAGE_FOLDERS)
_PATH = re.compile(r"(?<![\w./-])((?:" + _FOLDERS + r")/[\w./-]*)")


def doc_files() -> list[pathlib.Path]:
    """README.md and docs/*.md."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def broken_links(path: pathlib.Path, text: str) -> list[str]:
    """Relative link targets of `text` (a file at `path`) that do not exist."""
    bad = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            bad.append(target)
    return bad


def broken_paths(text: str) -> list[str]:
    """Repository paths named in `text` that do not exist."""
    bad = []
    for match in _PATH.finditer(text):
        if text[match.end():match.end() + 1] in ("{", "*", "<"):
            continue
        name = match.group(1).split("::")[0].rstrip(".")
        first = name.split("/")[0]
        base = ROOT / "discrete_diffusion" if first in PACKAGE_FOLDERS else ROOT
        if not (base / name).exists():
            bad.append(name)
    return bad


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_and_paths_resolve(path):
    text = path.read_text()
    assert broken_links(path, text) == [], f"{path.name}: links to nothing"
    assert broken_paths(text) == [], f"{path.name}: names paths that do not exist"


def test_the_checker_finds_broken_links_and_paths():
    readme = ROOT / "README.md"
    text = ("[ok](tests/conftest.py#a) [bad](docs/nope.md) [web](https://x.org) "
            "`configs/shakespeare_absorbing.py` configs/missing.py sampling/psi.py sampling/nope.py "
            "`tests/test_docs.py::test_x` configs/shakespeare_{absorbing,uniform}.py runs/out.txt")
    assert broken_links(readme, text) == ["docs/nope.md"]
    assert broken_paths(text) == ["docs/nope.md", "configs/missing.py", "sampling/nope.py"]


def test_readme_holds_the_ci_test_command():
    """.ci/run runs exactly the README's test command (the line after the comment naming CI)."""
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme = (ROOT / "README.md").read_text().splitlines()
    assert ci in readme
