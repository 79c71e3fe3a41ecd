"""Which fields each config section may hold, and the `--config` flag that makes them settable.

Every section of an experiment config is closed: a field nobody reads (a typo such as
`training.num_stpes`, in a config file or on the command line) is an error naming the field, the
nearest known field and the section's fields, in one line. The fields of a section:

    process   sampling.PROCESS_FIELDS
    model     MODEL_FIELDS (+ the method's `config_fields['model']`, vadd: 'latent_dim')
    training  TRAINING_FIELDS
    data      data.default_data_config()
    sampler   sampling.declared_fields() (+ the method's `sampler_fields`, vadd: 'latent')
    eval      EVAL_FIELDS
    method    the method's `config_fields['method']` (MethodBase: ['name'])
    mesh      sharding.AXES

MODEL_FIELDS, TRAINING_FIELDS and EVAL_FIELDS are the fields of configs/base.py (configs import
nothing from the library; tests/test_config_fields.py keeps the two equal) plus the fields read
with a default that base.py leaves out (model.time_input, model.scale_by_sigma).

`define_config_flag` defines `--config=FILE` like ml_collections' `DEFINE_config_file`, but adds
every declared sampler field the file leaves out at its declared default (`sampling.
with_declared_fields`), and every field of the method (`MethodBase.config_declared`: the
method the command line's `--config.method.name` picks, else the file's), so
`--config.sampler.tokens_per_step=2` and `--config.method.tau_end=0.1` work from every config; it
refuses an override of an unknown field with the one-line error above.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

MODEL_FIELDS = (
    "name", "size", "num_layers", "d_model", "num_heads", "cond_dim", "parameterization",
    "time_conditioning", "dropout", "dtype", "remat", "logits_chunk", "attention_impl",
    "attention_block", "noise_input", "num_labels", "pos_embedding", "time_input", "scale_by_sigma",
)
TRAINING_FIELDS = (
    "loss", "batch_size", "num_steps", "learning_rate", "lr_schedule", "warmup_steps", "weight_decay",
    "adam_b1", "adam_b2", "clip_norm", "ema_decay", "grad_accum_steps", "t_min", "label_dropout",
    "kl_warmup_steps", "kl_free_bits", "seed", "log_every", "eval_every", "eval_batches", "eval_num_t",
    "sample_every", "num_samples", "checkpoint_every", "max_checkpoints", "max_train_minutes",
    "max_nonfinite_steps", "nonfinite_skip", "start_fresh_if_unreadable",
)
EVAL_FIELDS = (
    "judge", "num_samples", "seed", "frontier", "samplers", "steps", "temperatures", "top_ps",
    "categoricals", "iwae_samples",
)


def unknown_field_message(section: str, key: str, fields: Any) -> str:
    """'config.SECTION.KEY is not a field of config.SECTION (did you mean ...?); its fields are [...]'."""
    fields = sorted(fields)
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"config.{section}.{key} is not a field of config.{section}{hint}; the fields of "
            f"config.{section} are {fields}")


def section_fields(config: Any, factory: Any = None) -> dict[str, tuple[str, ...]]:
    """The allowed fields of each section of `config` for the method `factory` (module doc)."""
    from discrete_diffusion import sampling, sharding
    from discrete_diffusion.data import default_data_config

    extra = dict(getattr(factory, "config_fields", None) or {})
    out = {
        "process": tuple(sampling.PROCESS_FIELDS),
        "model": MODEL_FIELDS + tuple(extra.get("model", ())),
        "training": TRAINING_FIELDS + tuple(extra.get("training", ())),
        "data": tuple(default_data_config().keys()) + tuple(extra.get("data", ())),
        "sampler": tuple(sampling.declared_fields()) + tuple(getattr(factory, "sampler_fields", ())),
        "eval": EVAL_FIELDS + tuple(extra.get("eval", ())),
        "mesh": tuple(sharding.AXES),
    }
    if "method" in extra:  # a factory that does not declare its method fields is not checked
        out["method"] = tuple(extra["method"])
    return out


def check_known_fields(config: Any, factory: Any = None) -> None:
    """Raises ValueError (one line, `unknown_field_message`) at the first unknown field."""
    for section, fields in section_fields(config, factory).items():
        values = config.get(section, None)
        if values is None or not hasattr(values, "keys"):
            continue
        for key in values:
            if key not in fields:
                raise ValueError(unknown_field_message(section, key, fields))


def complete(config: Any, method_name: str | None = None) -> Any:
    """`config` (an unlocked ConfigDict) with every declared sampler field (`sampling.
    with_declared_fields`) and every field the method declares (`MethodBase.config_declared`) that
    it lacks, at the declared default (a typed placeholder where that is None); returns it.

    `method_name` (default `methods.method_name(config)`) picks the method: the command line's
    `--config.method.name`, which ml_collections applies only after this. A name that does not
    resolve adds no method fields (validation then names it)."""
    from ml_collections import config_dict

    from discrete_diffusion import methods, sampling

    if config.get("sampler", None) is not None:
        sampling.with_declared_fields(config.sampler)
    try:
        factory = methods.factory(method_name or methods.method_name(config))
    except ValueError:
        return config
    for section, fields in (getattr(factory, "config_declared", None) or {}).items():
        if config.get(section, None) is None:
            config[section] = config_dict.ConfigDict()
        node = config[section]
        for key, (kind, default) in fields.items():
            if key not in node:
                node[key] = config_dict.placeholder(kind) if default is None else default
    return config


def _method_override(argv: list[str], name: str) -> str | None:
    """The last `--NAME.method.name=VALUE` of a command line (its value unquoted), or None."""
    found = None
    for arg in argv[1:]:
        match = re.match(rf"^--?{re.escape(name)}\.method\.name=(.*)$", arg)
        if match:
            found = match.group(1).strip().strip("'\"")
    return found


def _check_override(config: Any, path: str) -> None:
    """ValueError naming the first part of an override path `a.b.c` that `config` does not hold."""
    node, parts = config, path.split(".")
    for i, part in enumerate(parts):
        if not hasattr(node, "keys"):
            return  # a tuple index or a field of a non-ConfigDict value: ml_collections decides
        if part not in node:
            where = ".".join(parts[:i])
            if where:
                raise ValueError(unknown_field_message(where, part, node.keys()))
            raise ValueError(f"config.{part} is not a section; the sections are {sorted(node.keys())}")
        node = node[part]


def define_config_flag(name: str = "config", help_string: str = "Experiment config file (configs/*.py).",
                       lock_config: bool = True, flag_values: Any = None,
                       sys_argv: list[str] | None = None) -> Any:
    """`--NAME=FILE` (ml_collections' config file flag), completed and checked (module doc).

    `flag_values` (default absl's FLAGS) and `sys_argv` (default sys.argv at parse time) as in
    ml_collections' `DEFINE_config_file`; tests parse a command line in-process with them."""
    from absl import flags
    from ml_collections import config_dict, config_flags
    from ml_collections.config_flags.config_flags import ConfigFileFlagParser

    class _Parser(ConfigFileFlagParser):
        def parse(self, path: str) -> Any:
            config = super().parse(path)
            argv = sys.argv if sys_argv is None else sys_argv
            if isinstance(config, config_dict.ConfigDict):
                with config.unlocked():
                    complete(config, _method_override(argv, name))
                pattern = re.compile(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)")
                for arg in argv[1:]:
                    match = pattern.match(arg)
                    if match:
                        _check_override(config, match.group(1))
            return config

    flag_values = flags.FLAGS if flag_values is None else flag_values
    holder = config_flags.DEFINE_config_file(name, None, help_string, flag_values=flag_values,
                                             lock_config=lock_config, sys_argv=sys_argv)
    flag_values[name].parser = _Parser(name, lock_config=lock_config)
    return holder
