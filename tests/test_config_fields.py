"""config_fields: every declared sampler field is settable from the command line of every shipped
config (parsed in-process, as main.py parses it); unknown fields are refused in every section, in
a config file and on the command line, with a did-you-mean and the section's fields."""

from __future__ import annotations

import os
import re

import pytest
from absl import flags

from configs import base
from discrete_diffusion import config_fields, config_validation, sampling
from discrete_diffusion.sampling import ancestral, guidance, informed_pc, psi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and f != "base.py")
# A valid value other than the default for every str field (bool, int and float fields are derived).
OTHER_STR = {
    "name": "psi", "temperature_on": "denoiser", "categorical": "float32", "guidance": "none",
    "cfg_form": "posterior", "classifier_mode": "taylor", "classifier_time": "s",
    "bridge": ancestral.BRIDGES[1], "kappa_schedule": psi.SCHEDULES[2],
    "site_rule": informed_pc.SITE_RULES[2], "greedy_form": "duo",
}


def _other(key: str, kind: type, default):
    if kind is bool:
        return not default
    if kind is int:
        return 3 if default is None else default + 1
    if kind is float:
        return 0.5 if default is None or default != 0.5 else 0.25
    return OTHER_STR[key]


def _parse(config_file: str, *overrides: str):
    fv = flags.FlagValues()
    argv = ["prog", f"--config={os.path.join(ROOT, 'configs', config_file)}", *overrides]
    config_fields.define_config_flag("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    return fv.config


def _process_for(name: str) -> str:
    return next(p for p in ("masked", "uniform", "uniform_absorbing") if name in sampling.PROCESS_SAMPLERS[p])


def test_every_declared_field_of_every_sampler_is_settable_from_every_config():
    declared = sampling.declared_fields()
    assert {"tokens_per_step", "bridge", "kappa_schedule", "t_max", "guidance_weight"} <= set(declared)
    for i, config_file in enumerate(CONFIGS):
        for name in sampling.NAMES:
            fields = sampling.sampler_fields(name)
            # every field on every config would be 25 x 10 x 20 parses: each config gets every
            # sampler, and the sampler's fields rotate over the configs (each pair covered)
            chosen = [f for j, f in enumerate(fields) if (i + j) % 3 == 0 or config_file == CONFIGS[0]]
            values = {f: _other(f, *declared[f]) for f in chosen if f != "name"}
            args = [f"--config.sampler.{f}={v}" for f, v in values.items()]
            config = _parse(config_file, f"--config.sampler.name={name}",
                            f"--config.process.name={_process_for(name)}", *args)
            for f, v in values.items():
                assert config.sampler[f] == v and type(config.sampler[f]) is declared[f][0], (config_file, f)
            own = {k: v for k, v in config.sampler.items() if k in declared}  # not vadd's 'latent'
            settings = sampling.sampler_settings({"process": config.process, "sampler": own})
            for f, v in values.items():
                if f not in guidance.DEFAULTS and f not in sampling.SAMPLE_MODE_DEFAULTS:
                    assert settings[f] == v, (config_file, name, f)


def test_declared_fields_have_one_type_and_default_each():
    for key, (kind, _) in sampling.declared_fields().items():
        assert kind in (bool, int, float, str), key
        assert kind is not str or key in OTHER_STR, f"add a valid non-default value of {key!r} to OTHER_STR"


def test_another_samplers_field_is_refused_once_it_is_set():
    config = _parse("synthetic_absorbing.py")  # every declared field present at its default
    config_validation.validate(config)
    config = _parse("synthetic_absorbing.py", "--config.sampler.tokens_per_step=2")
    with pytest.raises(ValueError, match=r"config.sampler.tokens_per_step is a field of \['first_hitting'\]"):
        sampling.sampler_settings(config)


@pytest.mark.parametrize("override, message", [
    ("--config.training.bogus_field=3",
     r"^config\.training\.bogus_field is not a field of config\.training; the fields of config\.training "
     r"are \['adam_b1'.*'weight_decay'\]$"),
    ("--config.training.num_stpes=3", r"did you mean 'num_steps'\?"),
    ("--config.model.d_modle=8", r"config\.model\.d_modle .*did you mean 'd_model'\?"),
    ("--config.sampler.tokens_per_stp=2", r"did you mean 'tokens_per_step'\?"),
    ("--config.trainig.seed=1", r"config\.trainig is not a section; the sections are \[.*'training'"),
])
def test_an_unknown_field_on_the_command_line_is_one_line(override, message):
    with pytest.raises(flags.IllegalFlagValueError) as err:
        _parse("synthetic_absorbing.py", override)
    text = str(err.value).split(": ", 1)[1]
    assert "\n" not in text
    assert re.search(message, text), text


@pytest.mark.parametrize("section, key, close", [
    ("training", "num_stpes", "num_steps"), ("model", "d_modle", "d_model"), ("data", "seq_lne", "seq_len"),
    ("eval", "num_sampels", "num_samples"), ("method", "nmae", "name"), ("mesh", "fsdb", "fsdp"),
    ("process", "schedul", "schedule"),
])
def test_a_typo_in_a_config_file_is_refused_in_every_section(section, key, close):
    config = _parse("synthetic_absorbing.py")
    with config.unlocked():
        config[section][key] = 1
    with pytest.raises(ValueError, match=rf"config\.{section}\.{key} .*did you mean '{close}'\?"):
        config_validation.validate(config)


def test_every_shipped_config_validates_with_the_declared_fields():
    for config_file in CONFIGS:
        config_validation.validate(_parse(config_file))


def test_the_library_fields_are_base_py_fields():
    """MODEL/TRAINING/EVAL_FIELDS are configs/base.py's sections (plus the read-with-default ones)."""
    config = base.get_config()
    assert set(config_fields.TRAINING_FIELDS) == set(config.training.keys())
    assert set(config_fields.EVAL_FIELDS) == set(config.eval.keys())
    assert set(config_fields.MODEL_FIELDS) == set(config.model.keys()) | {"time_input", "scale_by_sigma"}


# A valid value other than the default for every declared method field (per method and field).
METHOD_OTHER = {
    ("duo", "curriculum_steps"): 7, ("duo", "tau"): 0.25, ("duo", "tau_end"): 1e-4, ("duo", "top_k"): 3,
    ("duo", "gamma_min"): -3.0, ("duo", "gamma_max"): -1.5,
    ("duo_distill", "teacher_workdir"): "/nonexistent/teacher", ("duo_distill", "teacher_params"): "params",
    ("duo_distill", "round_steps"): 5, ("duo_distill", "delta_init"): 0.25,
    ("duo_distill", "gamma_min"): -4.0, ("duo_distill", "gamma_max"): -1.0,
    ("learned_order", "schedule"): "value", ("learned_order", "num_masks"): 4,
    ("learned_order", "power_init"): 0.5, ("learned_order", "schedule_learning_rate"): 0.25,
    ("vadd", "encoder_layers"): 2, ("vadd", "latent_dim"): 8, ("vadd", "latent"): "per_trajectory",
}


def test_every_declared_field_of_every_method_is_settable_from_every_config():
    """--config.method.name=M plus every field M declares (`config_declared`), on every shipped
    config: each lands with its declared type."""
    from discrete_diffusion import methods

    declared = {n: methods.factory(n).config_declared for n in methods.NAMES}
    assert {k for d in declared.values() for s in d.values() for k in s} >= {
        "curriculum_steps", "tau_end", "round_steps", "num_masks", "encoder_layers", "latent_dim"}
    for name, sections in declared.items():
        for fields in sections.values():
            for key in fields:
                assert (name, key) in METHOD_OTHER, f"add a valid non-default value of {name}.{key}"
    for config_file in CONFIGS:
        for name, sections in declared.items():
            args = [f"--config.method.name={name}"]
            for section, fields in sections.items():
                args += [f"--config.{section}.{k}={METHOD_OTHER[(name, k)]}" for k in fields]
            config = _parse(config_file, *args)
            for section, fields in sections.items():
                for key, (kind, _) in fields.items():
                    value = config[section][key]
                    assert value == METHOD_OTHER[(name, key)], (config_file, name, key)
                    assert type(value) is kind, (config_file, name, key)


def test_method_fields_left_out_are_added_at_their_declared_defaults():
    """A config that leaves a method's fields out gets each at its declared default, and the
    method built from it is the method built without them (the declaration is what it reads)."""
    from discrete_diffusion import methods

    config = _parse("owt_absorbing.py", "--config.method.name=learned_order")
    assert dict(config.method) == {"name": "learned_order", **methods.learned_order.DEFAULTS}
    config_validation.validate(config)
    config = _parse("owt_absorbing.py", "--config.method.name=vadd", "--config.model.latent_dim=4")
    assert config.method.encoder_layers is None and config.sampler.latent == "per_step"
    config_validation.validate(config)
    with pytest.raises(ValueError, match=r"config\.model\.latent_dim=None must be an int >= 1"):
        config_validation.validate(_parse("owt_absorbing.py", "--config.method.name=vadd"))

    from configs import synthetic_uniform

    bare = _parse("synthetic_uniform.py", "--config.method.name=duo", "--config.process.num_classes=16")
    plain = synthetic_uniform.get_config()  # the same run with config.method = {'name': 'duo'} only
    with plain.unlocked():
        plain.method.name = "duo"
        plain.process.num_classes = 16
    assert set(bare.method) == set(methods.duo.FIELDS) and set(plain.method) == {"name"}
    a, b = methods.duo.Duo(bare, 16), methods.duo.Duo(plain, 16)
    assert (a.tau, a.tau_end, a.top_k, a.curriculum_steps) == (b.tau, b.tau_end, b.top_k, b.curriculum_steps)
    assert (a.dual.gamma_min, a.dual.gamma_max) == (b.dual.gamma_min, b.dual.gamma_max)


def test_an_unknown_method_field_is_refused_with_the_methods_fields():
    with pytest.raises(flags.IllegalFlagValueError, match=r"config\.method\.tua .*did you mean 'tau'\?"):
        _parse("owt_absorbing.py", "--config.method.name=duo", "--config.method.tua=0.1")
    with pytest.raises(flags.IllegalFlagValueError, match=r"config\.method\.tau is not a field"):
        _parse("owt_absorbing.py", "--config.method.tau=0.1")  # 'diffusion' has no tau
