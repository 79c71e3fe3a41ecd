"""config_drift: which config changes a resumed workdir refuses and which it accepts and logs."""

from __future__ import annotations

import json

import pytest
from test_train import tiny_config

from discrete_diffusion.training import config_drift


def _changed(**fields):
    config = tiny_config()
    for dotted, value in fields.items():
        section, name = dotted.split("__")
        with config.unlocked():
            config[section][name] = value
    return config


@pytest.mark.parametrize("fields, refused", [
    ({"model__d_model": 64}, ["model.d_model"]),
    ({"process__name": "uniform"}, ["process.name"]),
    ({"method__name": "autoregressive"}, ["method.name"]),
    ({"model__parameterization": "loo", "process__schedule": "cosine"},
     ["model.parameterization", "process.schedule"]),
    ({"data__synthetic_vocab_size": 16}, ["data.synthetic_vocab_size"]),
    ({"training__loss": "denoising_ce"}, ["training.loss"]),
    ({"training__seed": 1}, ["training.seed"]),
])
def test_changes_of_model_method_or_data_are_refused(tmp_path, fields, refused):
    (tmp_path / "config.json").write_text(tiny_config().to_json_best_effort(indent=1))
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(config_drift.ConfigDriftError) as err:
        config_drift.check_resume(str(tmp_path), _changed(**fields))
    for field in refused:
        assert field in str(err.value)
    assert "--workdir" in str(err.value)
    assert (tmp_path / "config.json").read_bytes() == before  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_deliberate_changes_are_accepted_and_kept_in_the_history(tmp_path):
    first = tiny_config()
    config_drift.record(str(tmp_path), first, None, {})
    second = _changed(training__num_steps=50, training__learning_rate=1e-3,
                      training__batch_size=8, training__eval_every=5, sampler__num_steps=8,
                      model__remat=True)
    accepted = config_drift.check_resume(str(tmp_path), second)
    assert set(accepted) == {"training.num_steps", "training.learning_rate",
                             "training.batch_size", "training.eval_every", "sampler.num_steps",
                             "model.remat"}
    assert accepted["training.batch_size"] == (16, 8)
    config_drift.record(str(tmp_path), second, 20, accepted)
    history = [json.loads(x) for x in (tmp_path / "config_history.jsonl").read_text().splitlines()]
    assert [h["resumed_from_step"] for h in history] == [None, 20]
    assert history[0]["config"]["training"]["batch_size"] == 16  # the first config is kept
    assert history[1]["changes"]["training.num_steps"] == [20, 50]
    assert json.loads((tmp_path / "config.json").read_text())["training"]["batch_size"] == 8


def test_no_saved_config_accepts_anything(tmp_path):
    assert config_drift.check_resume(str(tmp_path), tiny_config()) == {}


def test_a_field_one_side_lacks_is_accepted(tmp_path):
    """A config.json written before the library added a model field still resumes."""
    saved = json.loads(tiny_config().to_json_best_effort())
    del saved["model"]["remat"]
    saved["model"]["retired_field"] = 1
    (tmp_path / "config.json").write_text(json.dumps(saved))
    accepted = config_drift.check_resume(str(tmp_path), tiny_config())
    assert accepted == {"model.remat": (config_drift.MISSING, False),
                        "model.retired_field": (1, config_drift.MISSING)}
