"""sampling/__init__.py: settings of a config -- the per-process temperature default, the samplers
of each process, and rejection of fields the chosen sampler (or sampling) does not read."""

import glob
import importlib
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import discrete_diffusion as dd
from discrete_diffusion import config_validation, methods, sampling
from discrete_diffusion.evaluation import frontier
from discrete_diffusion.testing import oracle

K, L = 3, 2
P0 = oracle.toy_law(K, L, seed=1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(process="uniform", parameterization="denoiser", **sampler):
    return ml_collections.ConfigDict({
        "process": {"name": process, "schedule": "linear", "num_classes": K},
        "model": {"parameterization": parameterization},
        "sampler": {"name": "ancestral", "num_steps": 4, **sampler},
    })


# ---- temperature_on defaults per process ------------------------------------------
def test_temperature_on_defaults_to_the_loo_posterior_for_uniform_and_output_for_masked():
    assert sampling.sampler_settings(_config("uniform"))["temperature_on"] == "loo"
    assert sampling.sampler_settings(_config("masked"))["temperature_on"] == "output"
    ua = _config("uniform_absorbing", name="audm")
    assert sampling.sampler_settings(ua)["temperature_on"] == "output"
    chosen = sampling.sampler_settings(_config("uniform", temperature_on="denoiser"))
    assert chosen["temperature_on"] == "denoiser"


def test_uniform_temperature_tempers_the_loo_posterior_of_a_denoiser_network():
    """Denoiser network, uniform process, T = 0.5, no temperature_on: the sampler sees
    rho^2 / sum rho^2 (rev_udm), not the tempered denoiser."""
    proc = dd.processes.uniform(K)
    model = oracle.exact_model_fn(P0, proc, "denoiser")
    x_t, t = jnp.array([[0, 2], [1, 1]]), jnp.array([0.5, 0.5])
    ctx = sampling.make_context(model, _config("uniform", temperature=0.5), 2, L)
    assert ctx.output_parameterization == "loo"
    loo = dd.parameterizations.convert(proc, "denoiser", "loo", model(x_t, t), x_t, t)
    rho = np.exp(np.asarray(loo, np.float64))
    np.testing.assert_allclose(np.exp(ctx.network(x_t, t)), rho**2 / (rho**2).sum(-1, keepdims=True),
                               atol=1e-5)


def test_bad_temperature_on_names_the_field():
    with pytest.raises(ValueError, match="config.sampler.temperature_on='loo' is not one of"):
        sampling.sampler_settings(_config("uniform_absorbing", name="audm", temperature_on="loo"))
    with pytest.raises(ValueError, match="config.sampler.temperature_on"):
        sampling.sampler_settings(_config("uniform", temperature_on="posterior"))


# ---- samplers of each process ------------------------------------------------------
@pytest.mark.parametrize("name", ["ancestral", "psi", "informed_pc", "score_euler", "first_hitting"])
def test_uniform_absorbing_refuses_other_samplers_naming_the_valid_ones(name):
    """'ancestral' crashed with "TypeError: 'bool' object is not subscriptable"."""
    config = _config("uniform_absorbing", name=name)
    proc = dd.processes.from_config(config.process)
    model = oracle.exact_audm_model_fn(P0, proc)
    with pytest.raises(ValueError, match=r"config.sampler.name='[a-z_]+' does not apply to "
                                         r"config.process.name='uniform_absorbing'.*\['audm', 'reaudm'\]"):
        dd.sample(jax.random.key(0), model, config, 2, L)


def test_uniform_absorbing_config_with_ancestral_fails_at_start_up():
    from configs import shakespeare_uniform_absorbing

    config = shakespeare_uniform_absorbing.get_config()
    config_validation.validate(config)
    config.sampler.name = "ancestral"
    with pytest.raises(ValueError, match="config.sampler.name='ancestral'.*'audm'"):
        config_validation.validate(config)


# ---- unknown fields ----------------------------------------------------------------
def test_a_typo_names_the_field_and_lists_the_samplers_fields():
    config = _config(name="informed_pc", mh_corect=True)
    model = oracle.exact_model_fn(P0, dd.processes.uniform(K), "denoiser")
    with pytest.raises(ValueError) as err:
        dd.sample(jax.random.key(0), model, config, 2, L)
    message = str(err.value)
    assert "config.sampler.mh_corect is not a field of any sampler (did you mean 'mh_correct'?)" in message
    for field in sampling.sampler_fields("informed_pc"):
        assert repr(field) in message


def test_a_field_of_another_sampler_is_rejected():
    with pytest.raises(ValueError, match=r"config.sampler.tokens_per_step is a field of \['first_hitting'\], "
                                         r"which config.sampler.name='ancestral' does not read"):
        sampling.sampler_settings(_config("masked", tokens_per_step=2))
    with pytest.raises(ValueError, match="config.sampler.kappa_schedule"):
        sampling.sampler_settings(_config("uniform", name="informed_pc", kappa_schedule="phases"))


def test_shared_and_guidance_fields_are_accepted_by_every_sampler():
    for name in sampling.NAMES:
        fields = set(sampling.sampler_fields(name))
        assert set(sampling.SAMPLER_DEFAULTS) <= fields
        assert set(sampling.guidance.DEFAULTS) <= fields
        assert set(sampling.SAMPLERS[name].DEFAULTS) <= fields
    sampling.sampler_settings(_config("masked", guidance_weight=2.0, categorical="float32", top_k=2))


def test_only_fields_of_drops_other_samplers_fields_and_keeps_typos():
    section = {"name": "first_hitting", "tokens_per_step": 2, "top_p": 0.9, "kapa": 0.5}
    assert sampling.only_fields_of("ancestral", section) == {"name": "first_hitting", "top_p": 0.9,
                                                             "kapa": 0.5}


def test_process_and_model_fields_sampling_reads():
    model = oracle.exact_model_fn(P0, dd.processes.uniform(K), "denoiser")
    config = _config()
    config.process.schedul_eps = 1e-3
    with pytest.raises(ValueError, match=r"config.process.schedul_eps .*did you mean 'schedule_eps'"):
        dd.sample(jax.random.key(0), model, config, 2, L)
    config = _config()
    del config.model["parameterization"]
    config.model.parametrization = "loo"
    with pytest.raises(ValueError, match=r"config.model.parametrization .*did you mean 'parameterization'"):
        dd.sample(jax.random.key(0), model, config, 2, L)
    config = _config()
    config.model.time_conditioning = "yes"
    with pytest.raises(ValueError, match="config.model.time_conditioning"):
        dd.sample(jax.random.key(0), model, config, 2, L)
    # training fields of the model section are not sampling's business
    config = _config()
    config.model.update({"name": "dit", "d_model": 32, "dropout": 0.1, "noise_input": False, "num_labels": 0})
    assert dd.sample(jax.random.key(0), model, config, 2, L).shape == (2, L)


def _experiment_configs():
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
        name = os.path.basename(path)[:-3]
        if name not in ("base", "__init__"):
            yield name


@pytest.mark.parametrize("name", list(_experiment_configs()))
def test_every_experiment_config_and_its_frontier_points_validate(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    config_validation.validate(config)
    own = methods.factory(methods.method_name(config)).sampler_fields  # e.g. vadd's 'latent'
    for point in frontier.grid(config, seq_len=16):
        trial = ml_collections.ConfigDict(config.to_dict())
        trial.sampler = point.sampler_config(config.sampler)
        for field in own:  # the method reads these itself, before it calls a sampler
            if field in trial.sampler:
                del trial.sampler[field]
        settings = sampling.sampler_settings(trial)
        assert settings["name"] == frontier.PRESETS[point.sampler]["name"]
