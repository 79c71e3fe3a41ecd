"""discrete_diffusion.interop: released MDLM / Duo / UDLM / SEDD checkpoints as our models.

Parity: tiny reference DiTs (2 blocks, d 64, random non-zero weights) were run in float64 by the
reference code itself (tests/fixtures/make_reference_fixtures.py, needs torch; the fixtures are
committed); our converted network must give their logits to max|diff| / max(1, max|ref|) <= 5e-5
in float32. Then the file formats and errors, `config.model.time_input`, and a converted model
through train (2 steps), eval (NELBO and the ancestral / first_hitting / psi frontier) and sample.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import discrete_diffusion as dd
from discrete_diffusion import config_validation, interop, models, schedules, training
from discrete_diffusion.evaluation import report
from discrete_diffusion.interop import state_dict as state_dict_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "reference")
MASKED = os.path.join(FIXTURES, "masked.safetensors")
UNIFORM = os.path.join(FIXTURES, "uniform.safetensors")
TOL = 5e-5
L = 8  # the fixtures' sequence length

# case: (weights, kind, load options)
CASES = {
    "mdlm_untimed": (MASKED, "mdlm", {}),  # MDLM OWT's default: the time MLP at sigma = 0, folded
    "mdlm_timed": (MASKED, "mdlm", {"time_conditioning": True}),
    "duo": (UNIFORM, "duo", {}),
    "udlm": (UNIFORM, "udlm", {}),
    "sedd_absorb": (MASKED, "sedd", {}),  # scale_by_sigma, mask column dropped
    "sedd_uniform": (UNIFORM, "sedd", {"graph": "uniform"}),
}


def _relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_the_reference_network(case):
    weights, kind, options = CASES[case]
    fixture = np.load(os.path.join(FIXTURES, f"{case}.npz"))
    loaded = interop.load(weights, kind, **options)
    x_t, t = fixture["x_t"], fixture["t"]
    ours = np.asarray(loaded.model_fn(x_t, t), np.float64)
    K = loaded.config.process.num_classes
    assert ours.shape == x_t.shape + (K,) and K == 32
    ref = fixture["logits"][..., :K]  # masked references: the mask row K dropped
    if kind == "sedd":  # SEDD sets log s(x_t^i) = 0; our score parameterization does the same
        b, i = np.nonzero(x_t < K)
        ours[b, i, x_t[b, i]] = 0.0
    assert _relative_error(ours, ref) <= TOL
    if loaded.config.process.name == "masked":
        assert (x_t == K).any() and (x_t < K).any()  # masked and clean inputs both covered
    if case == "mdlm_timed":  # dd.sample takes the config and model_fn (traced inside the sampler)
        config = loaded.config.copy_and_resolve_references()
        config.sampler.num_steps = 2
        samples = np.asarray(dd.sample(jax.random.PRNGKey(0), loaded.model_fn, config,
                                       num_samples=2, seq_len=L))
        assert samples.shape == (2, L) and ((samples >= 0) & (samples < K)).all()
    if case == "sedd_absorb":  # the time shift with per-position times and output_positions
        t_bl = np.linspace(0.05, 0.95, x_t.size, dtype=np.float32).reshape(x_t.shape)
        positions = np.array([[1, 5], [0, 7], [3, 3]])
        full = np.asarray(loaded.model_fn(x_t, t_bl))
        part = np.asarray(loaded.model_fn(x_t, t_bl, output_positions=positions))
        assert _relative_error(part, np.take_along_axis(full, positions[..., None], axis=1)) <= 1e-6
    if case == "mdlm_untimed":  # the fold matters: without it the logits are far off
        zero_cond = interop.load(weights, "mdlm", time_conditioning=True)
        assert _relative_error(np.asarray(zero_cond.model_fn(x_t, t)), ref) > 100 * TOL


def test_backbone_prefix_ema_and_config_json(tmp_path, monkeypatch):
    weights = load_file(MASKED)
    save_file({f"backbone.{k}": v for k, v in weights.items()}, str(tmp_path / "model.safetensors"))
    plain, prefixed = interop.load(MASKED, "mdlm"), interop.load(tmp_path, "mdlm")  # a folder
    assert prefixed.info["prefix"] == "backbone." and not prefixed.info["ema"]
    jax.tree.map(np.testing.assert_array_equal, plain.params, prefixed.params)

    # a Lightning checkpoint {'state_dict', 'ema': {'shadow_params'}} as torch.load returns it
    # (numpy here, so no torch is needed): the EMA list follows module.parameters(), i.e. the
    # state_dict's order without the rotary buffer
    names = [k for k in weights if k != "rotary_emb.inv_freq"]
    shadow = [2.0 * weights[k] for k in names] + [np.zeros(())]  # + MDLM's noise-schedule parameter
    lightning = {"state_dict": {f"backbone.{k}": v for k, v in weights.items()},
                 "ema": {"decay": 0.9999, "shadow_params": shadow}}
    monkeypatch.setattr(state_dict_lib, "_read_torch", lambda path: lightning)
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"")
    ema = interop.load(ckpt, "mdlm")  # EMA by default when present
    raw = interop.load(ckpt, "mdlm", ema=False)
    assert ema.info["ema"] and not raw.info["ema"]
    jax.tree.map(np.testing.assert_array_equal, raw.params, plain.params)
    np.testing.assert_array_equal(ema.params["token_embed"]["embedding"],
                                  2.0 * plain.params["token_embed"]["embedding"])
    with pytest.raises(ValueError, match="holds no EMA"):
        interop.load(MASKED, "mdlm", ema=True)

    # num_heads and time_conditioning from config.json (MDLM's hub layout), no rotary buffer
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file({k: v for k, v in weights.items() if k != "rotary_emb.inv_freq"},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"n_heads": 4, "time_conditioning": True}))
    hub = interop.load(folder, "mdlm")
    assert hub.info["num_heads"] == 4 and hub.config.model.time_conditioning
    os.remove(folder / "config.json")
    with pytest.raises(ValueError, match="pass num_heads="):
        interop.load(folder, "mdlm")


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"kind='md4' is not one of \['mdlm', 'duo', 'udlm', 'sedd'\]"):
        interop.load(MASKED, "md4")
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not installed
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ImportError, match=r'pip install "discrete_diffusion\[torch\]"'):
        interop.load(ckpt, "mdlm")
    weights = load_file(MASKED)
    bad = dict(weights, **{"blocks.1.attn_qkv.weight": weights["blocks.1.attn_qkv.weight"][:-1]})
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"blocks\.1: attn_qkv \(191, 64\)"):
        interop.load(tmp_path / "bad.safetensors", "mdlm")
    save_file(dict(weights, **{"cond_map.embedding_table.weight": weights["sigma_map.mlp.0.bias"][None]}),
              str(tmp_path / "cfg.safetensors"))
    with pytest.raises(ValueError, match=r"does not know .*\['cond_map.embedding_table.weight'\]"):
        interop.load(tmp_path / "cfg.safetensors", "udlm")
    with pytest.raises(ValueError, match="contradicts the state_dict's rotary buffer"):
        interop.load(MASKED, "mdlm", num_heads=8)
    with pytest.raises(ValueError, match="output_layer.linear has 33 rows but vocab_embed has 32"):
        save_file(dict(weights, **{"vocab_embed.embedding": weights["vocab_embed.embedding"][:-1]}),
                  str(tmp_path / "short.safetensors"))
        interop.load(tmp_path / "short.safetensors", "duo")


def _config(**model):
    config = interop.base_config()
    config.process.num_classes = 8
    config.model.update(model)
    return config


def test_time_input_is_validated_and_embeds_sigma():
    with pytest.raises(ValueError,
                       match=r"config.model.time_input='t' is not one of \['scaled_t', 'sigma'\]"):
        config_validation.validate(_config(time_input="t"))
    linear = _config(time_input="sigma")
    linear.process.schedule = "linear"
    with pytest.raises(ValueError, match=r"config.process.schedule='linear' \(alpha\(1\) = 0\)"):
        config_validation.validate(linear)
    with pytest.raises(ValueError, match="scale_by_sigma=True needs config.model.time_input='sigma'"):
        config_validation.validate(_config(scale_by_sigma=True))
    uniform = _config(time_input="sigma", scale_by_sigma=True, parameterization="score")
    uniform.process.name = "uniform"
    with pytest.raises(ValueError, match="scale_by_sigma=True .* needs config.process.name='masked'"):
        config_validation.validate(uniform)
    config_validation.validate(_config(time_input="sigma"))

    # 'sigma' embeds -log alpha_t unscaled: the same network as 'scaled_t' at t' = sigma / 1000
    config = _config(time_input="sigma", size="custom", num_layers=1, d_model=16, num_heads=2,
                     cond_dim=8, dropout=0.0)
    net, default = models.get_model(config, 8, 9), models.get_model(_config(**{
        k: config.model[k] for k in ("size", "num_layers", "d_model", "num_heads", "cond_dim")}), 8, 9)
    assert net.time_input == "sigma" and default.time_input == "scaled_t" and default.schedule is None
    x = jnp.array([[0, 8, 3, 8], [8, 8, 1, 2]])
    t = jnp.array([0.1, 0.9])
    params = jax.jit(default.init)(jax.random.PRNGKey(0), x, t)["params"]
    rng = np.random.default_rng(1)  # non-zero adaLN and output weights: t reaches the logits
    params = jax.tree.map(lambda p: np.float32(0.3) * rng.standard_normal(p.shape, np.float32) + p, params)
    sigma = -np.log1p(-(1 - 1e-3) * np.asarray(t, np.float64))
    assert np.allclose(net.schedule.alpha(0.5), schedules.get("loglinear").alpha(0.5))
    got = np.asarray(jax.jit(net.apply)({"params": params}, x, t))
    default_apply = jax.jit(default.apply)
    want = default_apply({"params": params}, x, jnp.asarray(sigma / 1000.0, jnp.float32))
    assert _relative_error(got, np.asarray(want)) <= 1e-5
    assert _relative_error(got, np.asarray(default_apply({"params": params}, x, t))) > 1e-3


def _convert_script():
    spec = importlib.util.spec_from_file_location("convert_checkpoint",
                                                  os.path.join(ROOT, "launch", "convert_checkpoint.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converted_model_trains_evaluates_and_samples(tmp_path):
    """launch/convert_checkpoint.py, then what main.py runs for --mode=train / eval / sample on
    workdir/config.py (in-process, as tests/test_configs_run.py): the timed MDLM network, whose
    time input is sigma, through training, the NELBO and the three samplers."""
    workdir = str(tmp_path / "run")
    sets = ["data.seq_len=8", "data.num_train_sequences=64", "data.num_eval_sequences=8",
            "data.eval_batch_size=8", "data.num_threads=1", "data.prefetch=2",
            "training.batch_size=8", "training.num_steps=2", "training.log_every=1",
            "training.eval_every=2", "training.eval_batches=1", "training.eval_num_t=2",
            "training.sample_every=0", "training.checkpoint_every=2", "training.num_samples=2",
            "sampler.num_steps=2", "eval.num_samples=2", "eval.frontier=True",
            "eval.samplers='ancestral,first_hitting,psi'",
            "eval.steps=(2,)", "eval.temperatures=(1.0,)", "eval.top_ps=(1.0,)"]
    _convert_script().main([f"--source={MASKED}", "--kind=mdlm", "--time_conditioning=true",
                            f"--workdir={workdir}", *[f"--set={s}" for s in sets]])
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        _convert_script().main([f"--source={MASKED}", "--kind=mdlm", f"--workdir={workdir}"])
    spec = importlib.util.spec_from_file_location("workdir_config", os.path.join(workdir, "config.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()  # what --config=W/config.py gives main.py
    assert config.model.time_input == "sigma" and config.eval.steps == (2,)
    config_validation.validate(config)

    restored = training.load_state(config, workdir)[3]  # step 0: the converted weights
    loaded = interop.load(MASKED, "mdlm", time_conditioning=True)
    jax.tree.map(np.testing.assert_array_equal, restored.ema_params["network"], loaded.params)

    state = training.train_and_evaluate(config, workdir)  # resumes from step 0
    assert int(state.step) == 2
    summary = report.evaluate_workdir(config, workdir)  # --mode=eval
    assert summary["step"] == 2 and np.isfinite(summary["eval_bpt"])
    rows = json.loads((tmp_path / "run" / "eval" / "frontier.json").read_text())
    assert {"ancestral", "first_hitting", "psi"} <= {r.get("sampler") for r in rows}
    texts = training.sample_checkpoint(config, workdir)  # --mode=sample
    assert len(texts) == 2
