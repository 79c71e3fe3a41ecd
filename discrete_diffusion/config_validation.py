"""Start-up validation of a whole experiment config: every error names the field and allowed values.

The core modules validate their own sections when they are built (processes.from_config,
models.get_model, sampling.sampler_settings, data.get_data); this module checks everything that
can be checked before any data is loaded, reusing those registries.
"""

from __future__ import annotations

import inspect
from typing import Any

from discrete_diffusion import (
    config_fields,
    losses,
    methods,
    parameterizations,
    processes,
    sampling,
    schedules,
    sharding,
)
from discrete_diffusion.data import DATASETS
from discrete_diffusion.data.bundle import SOURCES
from discrete_diffusion.methods import chunked
from discrete_diffusion.models import (
    ATTENTION_IMPLS,
    DTYPES,
    MODELS,
    POS_EMBEDDINGS,
    SIZES,
    attention_block_of,
    time_input_of,
)
from discrete_diffusion.training.trainer import NONFINITE_SKIP

LR_SCHEDULES = ("constant", "cosine")
MODES = ("train", "eval", "sample")


def _choice(config: Any, path: str, allowed: tuple | list) -> None:
    value = _get(config, path)
    if value not in allowed:
        raise ValueError(f"config.{path}={value!r} is not one of {list(allowed)}")


def _get(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        if node is None or part not in node:
            raise ValueError(f"config.{path} is missing")
        node = node[part]
    return node


def _number(config: Any, path: str, *, minimum: float | None = None, maximum: float | None = None,
            integer: bool = False, min_exclusive: bool = False, max_exclusive: bool = False) -> None:
    value = _get(config, path)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"config.{path}={value!r} must be {kind}")
    lo_ok = minimum is None or (value > minimum if min_exclusive else value >= minimum)
    hi_ok = maximum is None or (value < maximum if max_exclusive else value <= maximum)
    if not (lo_ok and hi_ok):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        lb, rb = ("(" if min_exclusive else "["), (")" if max_exclusive else "]")
        raise ValueError(f"config.{path}={value!r} must lie in {lb}{lo}, {hi}{rb}")


def _without_sampler_fields(config: Any, fields: tuple) -> Any:
    """`config` without the config.sampler fields `fields` (a method's own, e.g. vadd's 'latent')."""
    if not fields or not any(f in config.sampler for f in fields):
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for f in fields:
            if f in config.sampler:
                del config.sampler[f]
    return config


def validate(config: Any) -> None:
    """Raises ValueError naming the first bad field of `config` (and its allowed values)."""
    for section in ("process", "model", "training", "data", "sampler"):
        if section not in config:
            raise ValueError(f"config.{section} is missing (see configs/base.py)")
    factory = methods.factory(methods.method_name(config))  # registered or importable
    config_fields.check_known_fields(config, factory)  # no field nobody reads, in any section
    # a method's own fields: its static `validate_config(config)` hook, if it has one (vadd does)
    if isinstance(inspect.getattr_static(factory, "validate_config", None), staticmethod):
        factory.validate_config(config)
    _choice(config, "process.name", processes.NAMES)
    _choice(config, "process.schedule", schedules.NAMES)
    _number(config, "process.schedule_eps", minimum=0.0, maximum=1.0, min_exclusive=True,
            max_exclusive=True)
    k = config.process.get("num_classes", None)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
        raise ValueError(f"config.process.num_classes={k!r} must be None (from the data) or an int >= 2")

    if "eval" in config:
        from discrete_diffusion.evaluation import frontier

        frontier.validate_eval(config)

    _choice(config, "model.name", list(MODELS))
    _choice(config, "model.size", [*SIZES, "custom"])
    _choice(config, "model.parameterization", parameterizations.NAMES)
    _choice(config, "model.dtype", list(DTYPES))
    if config.model.get("attention_impl", None) is not None:
        _choice(config, "model.attention_impl", [x for x in ATTENTION_IMPLS if x is not None])
    attention_block_of(config.model)
    if "pos_embedding" in config.model:  # configs/base.py has it; older saved configs not
        _choice(config, "model.pos_embedding", list(POS_EMBEDDINGS))
    _number(config, "model.dropout", minimum=0.0, maximum=1.0, max_exclusive=True)
    chunked.logits_chunk(config)
    time_input_of(config)  # config.model.time_input / scale_by_sigma (models/time_input.py)
    if config.model.get("time_conditioning", True) not in (True, False):
        raise ValueError(
            f"config.model.time_conditioning={config.model.time_conditioning!r} must be True or False"
        )

    if config.process.name == "uniform_absorbing":
        if config.model.parameterization != "denoiser":
            raise ValueError(
                f"config.model.parameterization={config.model.parameterization!r} is not one of "
                "['denoiser'] for config.process.name='uniform_absorbing'"
            )
        if not config.model.get("noise_input", False):
            raise ValueError(
                "config.model.noise_input must be True for config.process.name='uniform_absorbing'"
            )

    _choice(config, "training.loss", losses.NAMES)
    _choice(config, "training.lr_schedule", LR_SCHEDULES)
    for field in ("batch_size", "num_steps", "grad_accum_steps", "log_every", "max_checkpoints",
                  "eval_num_t"):
        _number(config, f"training.{field}", minimum=1, integer=True)
    if "max_nonfinite_steps" in config.training:  # configs/base.py has it; older saved configs not
        _number(config, "training.max_nonfinite_steps", minimum=1, integer=True)
    if "nonfinite_skip" in config.training:  # configs/base.py has it; older saved configs not
        _choice(config, "training.nonfinite_skip", NONFINITE_SKIP)
    if config.training.get("start_fresh_if_unreadable", False) not in (True, False):
        raise ValueError(
            "config.training.start_fresh_if_unreadable="
            f"{config.training.start_fresh_if_unreadable!r} must be True or False"
        )
    _number(config, "training.max_train_minutes", minimum=0.0)
    if "kl_warmup_steps" in config.training:
        _number(config, "training.kl_warmup_steps", minimum=0, integer=True)
    if "eval" in config and "iwae_samples" in config.eval:
        _number(config, "eval.iwae_samples", minimum=0, integer=True)
    for field in ("warmup_steps", "eval_every", "eval_batches", "sample_every", "checkpoint_every",
                  "num_samples", "seed"):
        _number(config, f"training.{field}", minimum=0, integer=True)
    _number(config, "training.learning_rate", minimum=0.0, min_exclusive=True)
    _number(config, "training.weight_decay", minimum=0.0)
    _number(config, "training.clip_norm", minimum=0.0)
    _number(config, "training.ema_decay", minimum=0.0, maximum=1.0, max_exclusive=True)
    _number(config, "training.t_min", minimum=0.0, maximum=1.0, max_exclusive=True)
    if "label_dropout" in config.training:
        _number(config, "training.label_dropout", minimum=0.0, maximum=1.0, max_exclusive=True)
    tc = config.training
    if tc.batch_size % tc.grad_accum_steps:
        raise ValueError(
            f"config.training.batch_size={tc.batch_size} must be divisible by "
            f"config.training.grad_accum_steps={tc.grad_accum_steps}"
        )

    _choice(config, "data.name", DATASETS)
    if "source" in config.data:  # configs/base.py has it; older saved configs not
        _choice(config, "data.source", SOURCES)
    # name, num_steps, bridge; without the config.sampler fields the method reads itself
    sampling.sampler_settings(_without_sampler_fields(config, getattr(factory, "sampler_fields", ())))
    _number(config, "sampler.temperature", minimum=0.0, min_exclusive=True)
    _number(config, "sampler.top_k", minimum=0, integer=True)
    _number(config, "sampler.top_p", minimum=0.0, maximum=1.0, min_exclusive=True)

    # config.mesh: data, fsdp, tensor each -1 or >= 1, at most one -1 (missing section: all data);
    # that their product equals the device count is checked when the mesh is built.
    sharding.mesh_fields(config.get("mesh", None))
