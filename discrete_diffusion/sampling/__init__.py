"""Samplers, selected by `config.sampler.name` and reached through `sample` / `generate`.

    samples = dd.sample(key, model_fn, config, num_samples=N, seq_len=L)   # int32 [N, L]
    result = dd.sampling.generate(key, model_fn, config, num_samples=N, seq_len=L)
    result.tokens, result.nfe                                             # NFE: network calls

`model_fn(x_t, t)` returns logits `[N, L, K]` whose meaning is `config.model.parameterization`.
Config fields read (defaults in `defaults.SAMPLER`): config.process.{name, schedule, num_classes,
schedule_eps, schedule_power}, config.model.{parameterization, time_conditioning},
config.sampler.{name, num_steps, temperature, top_k, top_p, bridge, greedy_final, reuse_output}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion import processes
from discrete_diffusion.sampling import ancestral, categorical
from discrete_diffusion.sampling.ancestral import sample_ancestral
from discrete_diffusion.sampling.categorical import categorical as categorical_sample
from discrete_diffusion.sampling.categorical import transform_logits

__all__ = [
    "SampleResult", "generate", "sample", "ancestral", "categorical", "categorical_sample",
    "transform_logits", "sample_ancestral", "NAMES", "sampler_settings",
]

NAMES = ("ancestral",)

# Defaults of every sampler field; a config may omit any of them.
SAMPLER_DEFAULTS: dict[str, Any] = {
    "name": "ancestral",
    "num_steps": 128,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "bridge": "loo_plugin",
    "greedy_final": False,
    "reuse_output": True,
}


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """tokens: int32 [N, L] clean tokens; nfe: number of network evaluations (int)."""

    tokens: jax.Array
    nfe: int


def _field(section: Any, name: str, default: Any) -> Any:
    return section.get(name, default) if section is not None else default


def sampler_settings(config: Any) -> dict[str, Any]:
    """All sampler fields with defaults filled in, validated (errors name the field)."""
    section = config.get("sampler", None)
    out = {k: _field(section, k, v) for k, v in SAMPLER_DEFAULTS.items()}
    if out["name"] not in NAMES:
        raise ValueError(f"config.sampler.name={out['name']!r} is not one of {list(NAMES)}")
    if not isinstance(out["num_steps"], int) or out["num_steps"] < 1:
        raise ValueError(f"config.sampler.num_steps={out['num_steps']!r} must be an int >= 1")
    if out["bridge"] not in ancestral.BRIDGES:
        raise ValueError(
            f"config.sampler.bridge={out['bridge']!r} is not one of {list(ancestral.BRIDGES)}"
        )
    return out


def generate(
    key: jax.Array, model_fn: Callable[..., jax.Array], config: Any, num_samples: int,
    seq_len: int,
) -> SampleResult:
    """Samples `num_samples` sequences of length `seq_len` with the sampler of `config`."""
    proc = processes.from_config(config.process)
    model_section = config.get("model", None)
    parameterization = _field(model_section, "parameterization", "denoiser")
    if parameterization not in params_lib.NAMES:
        raise ValueError(
            f"config.model.parameterization={parameterization!r} is not one of "
            f"{list(params_lib.NAMES)}"
        )
    time_conditioning = _field(model_section, "time_conditioning", True)
    settings = sampler_settings(config)
    reuse = bool(settings["reuse_output"]) and proc.mask_id is not None and not time_conditioning

    @jax.jit
    def run(key):
        return sample_ancestral(
            key, model_fn, proc, num_samples=num_samples, seq_len=seq_len,
            num_steps=settings["num_steps"], parameterization=parameterization,
            bridge=settings["bridge"], temperature=settings["temperature"],
            top_k=settings["top_k"], top_p=settings["top_p"],
            greedy_final=settings["greedy_final"], reuse_output=reuse,
        )

    tokens, nfe = run(key)
    return SampleResult(tokens=jnp.asarray(tokens), nfe=int(nfe))


def sample(
    key: jax.Array, model_fn: Callable[..., jax.Array], config: Any, num_samples: int,
    seq_len: int,
) -> jax.Array:
    """int32 [num_samples, seq_len] clean tokens; see `generate` for the NFE count."""
    return generate(key, model_fn, config, num_samples, seq_len).tokens
