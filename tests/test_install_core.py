"""setup.py: the core install (`pip install discrete_diffusion`, no extras) is jax, jaxlib, numpy and
ml-collections only, and the functional API (a loss, its gradient, `dd.sample`) runs on it.

One test, marked `core_install` (`pytest -m "not core_install"` skips it): it builds a fresh venv
(no system site-packages), installs a copy of the package with the versions of constraints.txt
(pip reaches the package index, as the README's install does), checks that flax, optax, orbax,
grain, tensorflow_datasets and the other training and evaluation packages are absent
(jax itself brings scipy, ml-collections absl-py), and runs the API there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run inside the fresh venv. It fails if any training package is importable, or if the loss,
# its gradient or sampling fails.
SCRIPT = textwrap.dedent("""
    import importlib.util, sys
    absent = ("flax", "optax", "orbax", "grain", "tensorflow_datasets", "sentencepiece", "clu",
              "tensorboard", "matplotlib", "gguf", "tokenizers", "pytest")
    present = [m for m in absent if importlib.util.find_spec(m) is not None]
    assert not present, f"the core install pulled in {present}"
    import jax, jax.numpy as jnp, ml_collections
    import discrete_diffusion as dd
    K, L, N = 5, 6, 3
    proc = dd.processes.masked(num_classes=K, schedule=dd.schedules.get("linear"))
    key = jax.random.PRNGKey(0)
    x0 = jax.random.randint(key, (N, L), 0, K)
    t = jnp.full((N,), 0.5)
    x_t = proc.sample_marginal(jax.random.PRNGKey(1), x0, t)
    def loss(w):
        logits = jnp.broadcast_to(w, (N, L, K))
        return dd.losses.loss_per_token(proc, "denoiser", "elbo", logits, x0, x_t, t).sum(-1).mean()
    value, grad = jax.value_and_grad(loss)(jnp.zeros(K))
    assert jnp.isfinite(value) and grad.shape == (K,) and bool(jnp.all(jnp.isfinite(grad)))
    config = ml_collections.ConfigDict({
        "process": {"name": "masked", "schedule": "linear", "num_classes": K},
        "model": {"parameterization": "denoiser"},
        "sampler": {"name": "ancestral", "num_steps": 4},
    })
    model_fn = lambda x, t: jnp.zeros(x.shape + (K,))
    tokens = dd.sample(jax.random.PRNGKey(2), model_fn, config, num_samples=N, seq_len=L)
    assert tokens.shape == (N, L) and bool(jnp.all((tokens >= 0) & (tokens < K))), tokens
    print("core ok", float(value))
""")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{cmd[:4]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.core_install
def test_core_install_runs_the_functional_api(tmp_path):
    src = tmp_path / "src"  # a copy: building in the work tree would write build/ there
    shutil.copytree(os.path.join(ROOT, "discrete_diffusion"), src / "discrete_diffusion",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "setup.py"), src / "setup.py")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([py, "-m", "pip", "install", "-q", "--no-compile", "-c", os.path.join(ROOT, "constraints.txt"),
          str(src)], env=env, timeout=900)
    out = _run([py, "-c", SCRIPT], env={**env, "JAX_PLATFORMS": "cpu"}, cwd=str(tmp_path), timeout=300)
    assert "core ok" in out.stdout
