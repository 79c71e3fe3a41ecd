"""Samplers, selected by `config.sampler.name` and reached through `sample` / `generate`.

    samples = dd.sample(key, model_fn, config, num_samples=N, seq_len=L)   # int32 [N, L]
    result = dd.sampling.generate(key, model_fn, config, num_samples=N, seq_len=L)
    result.tokens, result.nfe                                             # NFE: network calls

`model_fn(x_t, t)` returns logits `[N, L, K]` whose meaning is `config.model.parameterization`.
Compiled once: a second `generate` with the same config, shapes and model_fn object costs no
compile (sampling/compiled.py). A model_fn built anew each call (a closure over new parameters)
compiles each time; pass the parameters instead, `generate(key, model_fn, config, N, L,
params=p)` with `model_fn(params, x_t, t)`, to reuse the compiled sampler across parameters.
A model_fn may accept `output_positions` (int32 [N, P]) and return logits `[N, P, K]` there only
(`DiffusionTransformer` does); first-hitting and masked ancestral sampling then never form the
[N, L, K] logits (sampling/context.py).
Prompting / infilling: pass `prompt_tokens` (int32 [N, L]) and `prompt_mask` (bool [N, L], True
where the token is given); every sampler keeps those positions and conditions on them.

Samplers (`config.sampler.name`): 'ancestral' (sampling/ancestral.py), 'psi' (sampling/psi.py:
Psi predictor-corrector and ReMDM), 'first_hitting' (sampling/first_hitting.py, masked only),
'ordered_first_hitting' (sampling/ordered_first_hitting.py, masked only: per-position unmasking
times pre-sampled from the schedule, decoded in decreasing time, one network call per token),
'informed_pc' (sampling/informed_pc.py: ancestral predictor + Gibbs corrector on the LOO posterior),
'audm' / 'reaudm' (sampling/absorbing_uniform.py, for the 'uniform_absorbing' process).
'score_euler' / 'score_tweedie' (sampling/score.py: SEDD's Euler and Tweedie tau-leaping samplers
on the concrete score). Class-conditional sampling (classifier-free and classifier guidance):
sampling/guidance.py, `guidance.guided_generate`.
Shared fields and defaults: `SAMPLER_DEFAULTS`; each sampler module adds its own `DEFAULTS`.
`config.sampler.categorical` = 'exact' (default) | 'float32' chooses how every sampler draws
(see sampling/categorical.py; 'float32' exists to reproduce the float32 Gumbel temperature bias).

Which fields a sampler accepts (`sampler_fields`): the shared ones, its own `DEFAULTS`, and the
guidance fields (`guidance.DEFAULTS`, read by `guidance.guided_generate` with every sampler). Any
other field of `config.sampler` is an error that names it and lists the sampler's fields: a typo
(`mh_corect`) and a field of another sampler (`tokens_per_step` with 'ancestral') alike, since either
would otherwise run as if it were absent. Sweeps that switch samplers on one section
(`evaluation.frontier`) drop the fields of other samplers first (`only_fields_of`).

Per-position schedules (learned decoding orders, methods/learned_order.py): `generate(...,
schedule=S)` replaces config.process's schedule by S, e.g. `schedules.PerTokenPolynomial(w)` with
w `[L]` (alpha_{t,l} = 1 - t^{w_l}). 'ancestral', 'psi' (not 'remdm_loop') and
'ordered_first_hitting' accept it (their kernels read alpha per token); 'first_hitting' (one
clock for every masked token) and the score samplers are refused (`PER_POSITION_SAMPLERS`).

Which samplers a process has (`PROCESS_SAMPLERS`): 'informed_pc' is refused for 'masked' (the LOO
posterior it resamples from is undefined at unmasked positions), 'ancestral' / 'psi' / the score
samplers for 'uniform_absorbing' (whose state carries the noise ids u; its ancestral sampler is
'audm'), 'audm' / 'reaudm' for every other process.

`config.sampler.temperature_on` defaults per process (`default_temperature_on`): 'loo' for uniform
diffusion (rev_udm: temper the LOO posterior; tempering the denoiser also sharpens the
self-evidence term and biases towards keeping the current token, see `Context.network`), 'output'
for masked diffusion (where the denoiser and the LOO posterior agree at masked positions) and for
'uniform_absorbing' (denoiser networks only).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import checks, processes
from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.sampling import (
    absorbing_uniform,
    ancestral,
    categorical,
    compiled,
    finite_guard,
    first_hitting,
    guidance,
    informed_pc,
    ordered_first_hitting,
    psi,
    score,
    trace,
)
from discrete_diffusion.sampling import categorical as categorical_lib
from discrete_diffusion.sampling.categorical import transform_logits
from discrete_diffusion.sampling.context import Context

__all__ = [
    "NAMES", "PROCESS_SAMPLERS", "SAMPLERS", "SWEEP_SAMPLERS", "SAMPLER_DEFAULTS", "Context",
    "SampleResult", "ancestral",
    "categorical", "default_temperature_on", "first_hitting", "generate", "guidance", "informed_pc",
    "declared_fields", "only_fields_of", "psi", "sample", "sampler_fields", "sampler_settings", "score",
    "transform_logits",
    "PER_POSITION_SAMPLERS", "is_per_position", "make_context", "ordered_first_hitting",
    "with_declared_fields",
]

SAMPLERS = {
    "ancestral": ancestral, "psi": psi, "first_hitting": first_hitting, "informed_pc": informed_pc,
    "ordered_first_hitting": ordered_first_hitting,
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
    "temperature_on": None,  # None: `default_temperature_on` of the process
    "categorical": "exact",  # 'float32': jax.random.categorical's biased float32 Gumbel (ablation)
}
SAMPLER_TYPES = {"temperature_on": str}  # the type of each field whose default is None
# Fields of config.sampler that --mode=sample reads, not the samplers (training.sample_checkpoint).
SAMPLE_MODE_DEFAULTS: dict[str, Any] = {"seed": None}  # None: config.training.seed
SAMPLE_MODE_TYPES = {"seed": int}
TEMPERATURE_ON = ("output", "loo", "denoiser")

# The samplers of each process (config.process.name); a process not listed here accepts all.
PROCESS_SAMPLERS: dict[str, tuple[str, ...]] = {
    "masked": ("ancestral", "psi", "first_hitting", "ordered_first_hitting", "score_euler",
               "score_tweedie"),
    "uniform": ("ancestral", "psi", "informed_pc", "score_euler", "score_tweedie"),
    "uniform_absorbing": ("audm", "reaudm"),
}
# The samplers a comparison of a process's samplers sweeps by default (evaluation.frontier with
# config.eval.samplers = 'auto'): the exact ancestral sampler and the main alternatives.
SWEEP_SAMPLERS: dict[str, tuple[str, ...]] = {
    "masked": ("ancestral", "psi", "first_hitting"),
    "uniform": ("ancestral", "psi", "informed_pc"),
    "uniform_absorbing": ("audm", "reaudm"),
}
# Why a sampler is not among a process's samplers (for the error message).
_NOT_FOR: dict[str, str] = {
    "informed_pc": "its corrector resamples from the LOO posterior p(x_0^i | x_t^{-i}), which the "
                   "masked process does not identify at unmasked positions; it needs "
                   "config.process.name='uniform'",
    "first_hitting": "it simulates the unmasking times of masked diffusion; it needs "
                     "config.process.name='masked'",
    "ordered_first_hitting": "it simulates the unmasking times of masked diffusion; it needs "
                             "config.process.name='masked'",
    "audm": "it samples the absorbing reformulation, config.process.name='uniform_absorbing'",
    "reaudm": "it samples the absorbing reformulation, config.process.name='uniform_absorbing'",
}
_NOT_FOR_PROCESS: dict[str, str] = {
    "uniform_absorbing": "the state of 'uniform_absorbing' carries the noise ids u and the network "
                         "reads them; its ancestral sampler is 'audm'",
}
# The samplers that accept a per-position schedule (`generate(..., schedule=...)`).
PER_POSITION_SAMPLERS = ("ordered_first_hitting", "ancestral", "psi")
# The fields of config.process that sampling reads (processes.from_config).
PROCESS_FIELDS = ("name", "schedule", "schedule_eps", "schedule_power", "num_classes")
# The fields of config.model that sampling reads; the section holds training fields as well, so only
# a near miss of one of these (while it is absent) is an error.
MODEL_FIELDS = ("parameterization", "time_conditioning", "num_labels")


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """tokens: int32 [N, L] clean tokens; nfe: number of network evaluations (int)."""

    tokens: jax.Array
    nfe: int


def _field(section: Any, name: str, default: Any) -> Any:
    return section.get(name, default) if section is not None else default


def sampler_fields(name: str) -> tuple[str, ...]:
    """The config.sampler fields that sampler `name` reads: shared, its own, and guidance's."""
    return tuple(dict.fromkeys([*SAMPLER_DEFAULTS, *SAMPLERS[name].DEFAULTS, *guidance.DEFAULTS,
                                *SAMPLE_MODE_DEFAULTS]))


def declared_fields() -> dict[str, tuple[type, Any]]:
    """Every config.sampler field that a sampler or guidance reads: name -> (type, default).

    One declaration per field: the owner's `DEFAULTS` (the type is the default's, or the owner's
    `TYPES` entry where the default is None). A field several samplers read (`bridge`) must have
    one default; a clash is an error here, so a test catches it.
    """
    owners = [("sampling", SAMPLER_DEFAULTS, SAMPLER_TYPES), ("guidance", guidance.DEFAULTS, guidance.TYPES),
              ("sample mode", SAMPLE_MODE_DEFAULTS, SAMPLE_MODE_TYPES)]
    owners += [(n, SAMPLERS[n].DEFAULTS, getattr(SAMPLERS[n], "TYPES", {})) for n in NAMES]
    out: dict[str, tuple[type, Any]] = {}
    for owner, defaults, types_ in owners:
        for key, default in defaults.items():
            kind = types_.get(key) if default is None else type(default)
            if kind is None:
                raise TypeError(f"sampler field {key!r} of {owner!r} has default None and no TYPES entry")
            if key in out and out[key] != (kind, default):
                raise TypeError(f"sampler field {key!r}: {owner!r} declares {(kind, default)}, "
                                f"another sampler {out[key]}")
            out[key] = (kind, default)
    return out


def with_declared_fields(section: Any) -> None:
    """Adds to config.sampler (an unlocked ConfigDict) every `declared_fields` entry it lacks, at
    its default (a typed placeholder where the default is None), so that each is settable as
    `--config.sampler.FIELD=VALUE`. A field of another sampler left at its default is accepted by
    validation; set to anything else it is refused (`_check_sampler_fields`)."""
    from ml_collections import config_dict

    for key, (kind, default) in declared_fields().items():
        if key not in section:
            section[key] = config_dict.placeholder(kind) if default is None else default


def only_fields_of(name: str, section: Any) -> dict[str, Any]:
    """The fields of a sampler section (dict or ConfigDict) that sampler `name` reads, plus those no
    sampler knows (so that typos still fail validation); fields of other samplers are dropped."""
    keep = set(sampler_fields(name))
    known = {k for n in NAMES for k in sampler_fields(n)}
    return {k: v for k, v in dict(section).items() if k in keep or k not in known}


def _check_sampler_fields(section: Any, name: str) -> None:
    """Every key of config.sampler must be a field of sampler `name` (errors name the field)."""
    if section is None:
        return
    allowed = sampler_fields(name)
    for key in section:
        if key in allowed:
            continue
        owners = [n for n in NAMES if key in SAMPLERS[n].DEFAULTS]
        if owners and section[key] == declared_fields()[key][1]:
            continue  # another sampler's field at its default (`with_declared_fields`): no effect
        if owners:
            why = f"a field of {owners}, which config.sampler.name={name!r} does not read"
        else:
            every = sorted({k for n in NAMES for k in sampler_fields(n)})
            close = difflib.get_close_matches(key, every, n=1)
            why = "not a field of any sampler" + (f" (did you mean {close[0]!r}?)" if close else "")
        raise ValueError(f"config.sampler.{key} is {why}; the fields of {name!r} are {sorted(allowed)}")


def default_temperature_on(process_name: str | None) -> str:
    """'loo' for uniform diffusion (rev_udm), 'output' for masked and 'uniform_absorbing'."""
    return "loo" if process_name == "uniform" else "output"


def _check_process(name: str, process_name: str | None) -> None:
    allowed = PROCESS_SAMPLERS.get(process_name)
    if allowed is None or name in allowed:
        return
    why = _NOT_FOR.get(name) or _NOT_FOR_PROCESS.get(process_name, "")
    raise ValueError(
        f"config.sampler.name={name!r} does not apply to config.process.name={process_name!r}"
        + (f" ({why})" if why else "") + f"; the samplers of {process_name!r} are {list(allowed)}"
    )


def sampler_settings(config: Any) -> dict[str, Any]:
    """All fields of the chosen sampler with defaults filled in, validated (errors name the field).

    Rejects fields the sampler does not read (`sampler_fields`) and samplers the process does not
    have (`PROCESS_SAMPLERS`); resolves `temperature_on` to the process's default when unset.
    """
    section = config.get("sampler", None)
    name = _field(section, "name", SAMPLER_DEFAULTS["name"])
    if name not in SAMPLERS:
        raise ValueError(f"config.sampler.name={name!r} is not one of {list(NAMES)}")
    _check_sampler_fields(section, name)
    process_section = config.get("process", None)
    process_name = _field(process_section, "name", None)
    _check_process(name, process_name)
    defaults = {**SAMPLER_DEFAULTS, **SAMPLERS[name].DEFAULTS}
    out = {k: _field(section, k, v) for k, v in defaults.items()}
    if out["temperature_on"] is None:
        out["temperature_on"] = default_temperature_on(process_name)
    allowed_on = ("output", "denoiser") if process_name == "uniform_absorbing" else TEMPERATURE_ON
    if out["temperature_on"] not in allowed_on:
        raise ValueError(f"config.sampler.temperature_on={out['temperature_on']!r} is not one of "
                         f"{list(allowed_on)} for config.process.name={process_name!r}")
    if isinstance(out["num_steps"], bool) or not isinstance(out["num_steps"], int) or out["num_steps"] < 1:
        raise ValueError(f"config.sampler.num_steps={out['num_steps']!r} must be an int >= 1")
    if out["categorical"] not in categorical_lib.METHODS:
        raise ValueError(f"config.sampler.categorical={out['categorical']!r} is not one of "
                         f"{list(categorical_lib.METHODS)}")
    if "bridge" in out and out["bridge"] not in ancestral.BRIDGES:
        raise ValueError(f"config.sampler.bridge={out['bridge']!r} is not one of {list(ancestral.BRIDGES)}")
    return out


def _check_section_fields(config: Any) -> None:
    """config.process: only the fields sampling reads (`PROCESS_FIELDS`). config.model (which
    also holds training fields): a near miss of a field sampling reads, while that field is
    absent, is an error (`parametrization` would otherwise silently mean 'denoiser')."""
    process = config.get("process", None)
    for key in (process.keys() if process is not None else ()):
        if key not in PROCESS_FIELDS:
            close = difflib.get_close_matches(key, PROCESS_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config.process.{key} is not a process field{hint}; the fields of "
                             f"config.process are {list(PROCESS_FIELDS)}")
    model = config.get("model", None)
    for key in (model.keys() if model is not None else ()):
        if key in MODEL_FIELDS:
            continue
        close = difflib.get_close_matches(key, MODEL_FIELDS, n=1, cutoff=0.8)
        if close and close[0] not in model:
            raise ValueError(f"config.model.{key} is not a field sampling reads (did you mean "
                             f"{close[0]!r}?); sampling reads config.model.{list(MODEL_FIELDS)}")
    tc = _field(model, "time_conditioning", True)
    if tc not in (True, False):
        raise ValueError(f"config.model.time_conditioning={tc!r} must be True or False")


def as_config(config: Any) -> Any:
    """`config` as a ConfigDict: a plain dict of sections ({'process': {...}, 'sampler': {...}})
    is converted; anything else without sections is a TypeError in one line."""
    from ml_collections import ConfigDict

    if isinstance(config, ConfigDict):
        return config
    if isinstance(config, dict):
        return ConfigDict(config)
    raise TypeError(f"config must be an ml_collections.ConfigDict (or a dict of its sections: "
                    f"'process', 'model', 'sampler'), got {type(config).__name__}")


def is_per_position(schedule: Any) -> bool:
    """Whether `schedule` has one alpha per position (a `PerTokenPolynomial` with power `[..., L]`)."""
    return getattr(schedule, "power", None) is not None and jax.numpy.ndim(schedule.power) >= 1


def make_context(
    model_fn: Callable[..., jax.Array], config: Any, num_samples: int, seq_len: int,
    prompt_tokens: jax.Array | None = None, prompt_mask: jax.Array | None = None,
    schedule: Any = None,
) -> Context:
    """The sampler context of a config (validates process, parameterization and sampler fields).

    `schedule` (None: config.process's) replaces the process's schedule, e.g. a learned
    per-position `schedules.PerTokenPolynomial(w)`; only `PER_POSITION_SAMPLERS` accept a
    per-position one (the error names config.sampler.name and lists them)."""
    config = as_config(config)
    _check_section_fields(config)
    proc = processes.from_config(config.process)
    if schedule is not None:
        proc = dataclasses.replace(proc, schedule=schedule)
        name = _field(config.get("sampler", None), "name", SAMPLER_DEFAULTS["name"])
        if is_per_position(schedule) and name not in PER_POSITION_SAMPLERS:
            raise ValueError(
                f"config.sampler.name={name!r} assumes one schedule for every position; with a "
                f"per-position schedule use one of {list(PER_POSITION_SAMPLERS)}")
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
        prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, recorder=trace.active(),
    )


def generate(
    key: jax.Array, model_fn: Callable[..., jax.Array], config: Any, num_samples: int,
    seq_len: int, *, prompt_tokens: jax.Array | None = None, prompt_mask: jax.Array | None = None,
    params: Any = None,
    schedule: Any = None,
) -> SampleResult:
    """Samples `num_samples` sequences of length `seq_len` with the sampler of `config`
    (`schedule`: replaces config.process's, see `make_context`).
    `params`: None, or the parameters of a `model_fn(params, x_t, t, **inputs)`, passed to the
    compiled sampler as an argument (new values reuse it). The compiled sampler is kept per
    (config, N, L, model_fn object) (sampling/compiled.py).
    A network output that is NaN, +inf or all -inf at some step raises
    `finite_guard.NonFiniteSamplingError` naming t (checked once at the end, no host sync in the
    loop); `num_samples=0` returns int32 [0, seq_len] for every process.
    """
    section = config.get("sampler", None) if hasattr(config, "get") else None
    finite_guard.check_request(num_samples, _field(section, "temperature", 1.0))
    ctx = make_context(model_fn, config, max(int(num_samples), 1), seq_len, prompt_tokens,
                       prompt_mask, schedule)
    if int(num_samples) == 0:
        return SampleResult(tokens=jnp.zeros((0, int(seq_len)), jnp.int32), nfe=0)
    tokens, nfe = compiled.run(key, ctx, SAMPLERS[ctx.settings["name"]].run, params)
    return SampleResult(tokens=tokens, nfe=int(nfe))


def sample(
    key: jax.Array, model_fn: Callable[..., jax.Array], config: Any, num_samples: int,
    seq_len: int, **prompt: jax.Array,
) -> jax.Array:
    """int32 [num_samples, seq_len] clean tokens; see `generate` for the NFE count and prompts."""
    return generate(key, model_fn, config, num_samples, seq_len, **prompt).tokens
