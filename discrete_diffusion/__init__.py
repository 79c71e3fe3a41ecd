"""discrete_diffusion: discrete diffusion models of text and images in JAX.

The functional core (this module's imports) needs only jax, numpy and ml-collections:

    import discrete_diffusion as dd
    proc = dd.processes.masked(num_classes=K, schedule=dd.schedules.get("linear"))
    logits_loo = dd.parameterizations.denoiser_to_loo(proc, logits, x_t, t)
    samples = dd.sample(key, model_fn, config, num_samples=N, seq_len=L)

`dd.methods` (the Method protocol and the built-in methods) and `dd.training` (the trainer) also
need flax and optax; they are imported on first use.
"""

import importlib

from discrete_diffusion import duality, losses, parameterizations, processes, sampling, schedules
from discrete_diffusion.sampling import generate, sample

__all__ = [
    "duality", "losses", "parameterizations", "processes", "sampling", "schedules", "generate", "sample",
]
__version__ = "0.1.0"

_LAZY = ("methods", "training")


def __getattr__(name: str):
    """`dd.methods` and `dd.training`, imported on first access (they need flax and optax)."""
    if name in _LAZY:
        return importlib.import_module(f"discrete_diffusion.{name}")
    raise AttributeError(f"module 'discrete_diffusion' has no attribute {name!r}")
