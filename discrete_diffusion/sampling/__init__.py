"""Samplers, selected by `config.sampler.name` and reached through `sample` / `generate`.

    samples = dd.sample(key, model_fn, config, num_samples=N, seq_len=L)   # int32 [N, L]
    result = dd.sampling.generate(key, model_fn, config, num_samples=N, seq_len=L)
    result.tokens, result.nfe                                             # NFE: network calls

`model_fn(x_t, t)` returns logits `[N, L, K]` whose meaning is `config.model.parameterization`.
Prompting / infilling: pass `prompt_tokens` (int32 [N, L]) and `prompt_mask` (bool [N, L], True
where the token is given); every sampler keeps those positions and conditions on them.

Samplers (`config.sampler.name`): 'ancestral' (sampling/ancestral.py), 'psi' (sampling/psi.py:
Psi predictor-corrector and ReMDM), 'first_hitting' (sampling/first_hitting.py, masked only),
'informed_pc' (sampling/informed_pc.py: ancestral predictor + Gibbs corrector on the LOO posterior),
'audm' / 'reaudm' (sampling/absorbing_uniform.py, for the 'uniform_absorbing' process).
'score_euler' / 'score_tweedie' (sampling/score.py: SEDD's Euler and Tweedie tau-leaping samplers
on the concrete score). Class-conditional sampling (classifier-free and classifier guidance):
sampling/guidance.py, `guidance.guided_generate`.
Shared fields and defaults: `SAMPLER_DEFAULTS`; each sampler module adds its own `DEFAULTS`.
`config.sampler.categorical` = 'exact' (default) | 'float32' chooses how every sampler draws
(see sampling/categorical.py; 'float32' exists to reproduce the float32 Gumbel temperature bias).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

import jax

from discrete_diffusion import checks, processes
from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.sampling import (
    absorbing_uniform,
    ancestral,
    categorical,
    first_hitting,
    guidance,
    informed_pc,
    psi,
    score,
)
from discrete_diffusion.sampling import categorical as categorical_lib
from discrete_diffusion.sampling.categorical import transform_logits
from discrete_diffusion.sampling.context import Context

__all__ = [
    "NAMES", "SAMPLERS", "SAMPLER_DEFAULTS", "Context", "SampleResult", "ancestral", "categorical",
    "first_hitting", "generate", "guidance", "informed_pc", "psi", "sample", "sampler_settings", "score",
    "transform_logits",
]

SAMPLERS = {
    "ancestral": ancestral, "psi": psi, "first_hitting": first_hitting, "informed_pc": informed_pc,
    "audm": types.SimpleNamespace(DEFAULTS=absorbing_uniform.DEFAULTS, run=absorbing_uniform.run_audm),
    "reaudm": types.SimpleNamespace(DEFAULTS=absorbing_uniform.DEFAULTS, run=absorbing_uniform.run_reaudm),
    "score_euler": score.EULER, "score_tweedie": score.TWEEDIE,
}
NAMES = tuple(SAMPLERS)

# Fields every sampler reads; a config may omit any of them.
SAMPLER_DEFAULTS: dict[str, Any] = {
    "name": "ancestral",
    "num_steps": 128,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "temperature_on": "output",
    "categorical": "exact",  # 'float32': jax.random.categorical's biased float32 Gumbel (ablation)
}


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """tokens: int32 [N, L] clean tokens; nfe: number of network evaluations (int)."""

    tokens: jax.Array
    nfe: int


def _field(section: Any, name: str, default: Any) -> Any:
    return section.get(name, default) if section is not None else default


def sampler_settings(config: Any) -> dict[str, Any]:
    """All fields of the chosen sampler with defaults filled in, validated (errors name the field)."""
    section = config.get("sampler", None)
    name = _field(section, "name", SAMPLER_DEFAULTS["name"])
    if name not in SAMPLERS:
        raise ValueError(f"config.sampler.name={name!r} is not one of {list(NAMES)}")
    defaults = {**SAMPLER_DEFAULTS, **SAMPLERS[name].DEFAULTS}
    out = {k: _field(section, k, v) for k, v in defaults.items()}
    if not isinstance(out["num_steps"], int) or out["num_steps"] < 1:
        raise ValueError(f"config.sampler.num_steps={out['num_steps']!r} must be an int >= 1")
    if out["categorical"] not in categorical_lib.METHODS:
        raise ValueError(f"config.sampler.categorical={out['categorical']!r} is not one of "
                         f"{list(categorical_lib.METHODS)}")
    if "bridge" in out and out["bridge"] not in ancestral.BRIDGES:
        raise ValueError(f"config.sampler.bridge={out['bridge']!r} is not one of {list(ancestral.BRIDGES)}")
    return out


def make_context(
    model_fn: Callable[..., jax.Array], config: Any, num_samples: int, seq_len: int,
    prompt_tokens: jax.Array | None = None, prompt_mask: jax.Array | None = None,
) -> Context:
    """The sampler context of a config (validates process, parameterization and sampler fields)."""
    proc = processes.from_config(config.process)
    model_section = config.get("model", None)
    parameterization = _field(model_section, "parameterization", "denoiser")
    if parameterization not in params_lib.NAMES:
        raise ValueError(
            f"config.model.parameterization={parameterization!r} is not one of {list(params_lib.NAMES)}"
        )
    # Shapes, dtypes and (before jit) prompt ids in [0, K): see checks.check_prompt.
    prompt_tokens, prompt_mask = checks.check_prompt(
        prompt_tokens, prompt_mask, num_samples, seq_len, proc.num_classes
    )
    return Context(
        proc=proc, model_fn=model_fn, parameterization=parameterization,
        settings=sampler_settings(config), num_samples=num_samples, seq_len=seq_len,
        time_conditioning=bool(_field(model_section, "time_conditioning", True)),
        prompt_tokens=prompt_tokens, prompt_mask=prompt_mask,
    )


def generate(
    key: jax.Array, model_fn: Callable[..., jax.Array], config: Any, num_samples: int,
    seq_len: int, *, prompt_tokens: jax.Array | None = None, prompt_mask: jax.Array | None = None,
) -> SampleResult:
    """Samples `num_samples` sequences of length `seq_len` with the sampler of `config`."""
    ctx = make_context(model_fn, config, num_samples, seq_len, prompt_tokens, prompt_mask)
    run = SAMPLERS[ctx.settings["name"]].run
    tokens, nfe = jax.jit(lambda k: run(k, ctx))(key)
    return SampleResult(tokens=tokens, nfe=int(nfe))


def sample(
    key: jax.Array, model_fn: Callable[..., jax.Array], config: Any, num_samples: int,
    seq_len: int, **prompt: jax.Array,
) -> jax.Array:
    """int32 [num_samples, seq_len] clean tokens; see `generate` for the NFE count and prompts."""
    return generate(key, model_fn, config, num_samples, seq_len, **prompt).tokens
