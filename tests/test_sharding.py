"""Scale-out: mesh config, partition rules, sharded training equal to 1 device, checkpoints moving
between meshes, 2 processes equal to 1 (launch/local.py), bfloat16 compute and remat.

Multi-device cases run in subprocesses with XLA_FLAGS=--xla_force_host_platform_device_count=8
(the device count is fixed when jax starts); this process has one CPU device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from test_train import xla_flags

from configs import base, synthetic_absorbing
from discrete_diffusion import config_validation, sharding, training
from discrete_diffusion import models as models_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")

# (field, value) overrides of configs/synthetic_absorbing.py: a tiny model on a tiny problem. Kept
# as a list so the same run can be configured in-process and on a command line.
OVERRIDES = [
    ("data.seq_len", 16), ("data.synthetic_vocab_size", 8), ("data.num_train_sequences", 2048),
    ("data.num_eval_sequences", 64), ("data.num_threads", 1), ("data.prefetch", 2),
    ("model.num_layers", 1), ("model.d_model", 32), ("model.num_heads", 2), ("model.cond_dim", 16),
    ("training.batch_size", 16), ("training.learning_rate", 3e-3), ("training.warmup_steps", 0),
    ("training.ema_decay", 0.9), ("training.log_every", 1), ("training.eval_every", 0),
    ("training.sample_every", 0), ("training.checkpoint_every", 0), ("sampler.num_steps", 4),
]


def tiny_config(num_steps: int = 5, mesh: tuple[int, int, int] = (-1, 1, 1)) -> ml_collections.ConfigDict:
    config = synthetic_absorbing.get_config()
    for path, value in OVERRIDES:
        section, field = path.split(".")
        config[section][field] = value
    config.training.num_steps = num_steps
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh
    return config


def cli_overrides(num_steps: int) -> list[str]:
    return [f"--config.{p}={v}" for p, v in OVERRIDES] + [f"--config.training.num_steps={num_steps}"]


def flat_params(params) -> dict[str, np.ndarray]:
    return {sharding.path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(params)}


def assert_trees_close(a: dict, b: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol, err_msg=k)


def run_python(script: str, devices: int, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS=xla_flags(devices), JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


# ----------------------------------------------------------------------------- config


def test_mesh_shape_and_validation():
    cfg = ml_collections.ConfigDict({"data": -1, "fsdp": 2, "tensor": 2})
    assert sharding.mesh_shape(cfg, 8) == (2, 2, 2)
    assert sharding.mesh_shape(None, 4) == (4, 1, 1)
    assert sharding.mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1)
    with pytest.raises(ValueError, match=r"config.mesh.fsdp=0 must be -1 .* or an int >= 1"):
        sharding.mesh_shape({"fsdp": 0}, 8)
    with pytest.raises(ValueError, match=r"at most one of \['config.mesh.data', 'config.mesh.tensor'\]"):
        sharding.mesh_shape({"data": -1, "tensor": -1}, 8)
    with pytest.raises(ValueError, match=r"needs 4 devices, but there are 8"):
        sharding.mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
    with pytest.raises(ValueError, match=r"not divisible"):
        sharding.mesh_shape({"data": -1, "tensor": 3}, 8)
    with pytest.raises(ValueError, match=r"config.mesh.model is not a mesh axis"):
        sharding.mesh_shape({"model": 2}, 8)
    mesh = sharding.make_mesh(tiny_config(), jax.devices()[:1])
    assert mesh.axis_names == ("data", "fsdp", "tensor") and mesh.devices.shape == (1, 1, 1)
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)

    config = base.get_config()
    config_validation.validate(config)
    config.mesh.tensor = 0
    with pytest.raises(ValueError, match=r"config.mesh.tensor=0 must be -1"):
        config_validation.validate(config)


# ----------------------------------------------------------------------------- partition rules


def _abstract_params(**model_overrides):
    config = base.get_config()
    config.model.size = "tiny"
    for k, v in model_overrides.items():
        config.model[k] = v
    model = models_lib.get_model(config, 10, 11)
    inputs = models_lib.example_inputs(model, 2, 8)
    return jax.eval_shape(lambda k: model.init({"params": k}, **inputs)["params"], jax.random.PRNGKey(0))


def test_rules_cover_every_parameter_and_shard():
    mesh_sizes = {"data": 1, "fsdp": 4, "tensor": 2}
    dit = _abstract_params(num_labels=10, noise_input=True, time_conditioning=True)
    ar = _abstract_params(name="ar", time_conditioning=False)
    for params in (dit, ar):
        specs = sharding.param_specs(params)
        flat = {sharding.path_str(p): s for p, s in jax.tree_util.tree_leaves_with_path(
            specs, is_leaf=lambda s: isinstance(s, P))}
        shapes = {sharding.path_str(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(params)}
        assert flat.keys() == shapes.keys()
        fitted = {k: sharding.fit_spec(s, shapes[k], mesh_sizes) for k, s in flat.items()}
        assert any("fsdp" in s for s in fitted.values()) and any("tensor" in s for s in fitted.values())
    paths = set(flat_params_abstract(dit))
    for name in ("token_embed/embedding", "noise_embed/embedding", "match_embed", "label_embed/embedding",
                 "time_embed/fc1/kernel", "blocks_0/attn/qkv/kernel", "blocks_0/mlp/fc2/bias",
                 "final/out/kernel"):
        assert name in paths, name
    dspecs = sharding.param_specs(dit)
    assert dspecs["blocks_0"]["attn"]["qkv"]["kernel"] == P("fsdp", None, "tensor", None)
    assert dspecs["blocks_0"]["attn"]["out"]["kernel"] == P("tensor", None, "fsdp")
    assert dspecs["blocks_0"]["mlp"]["fc1"]["kernel"] == P("fsdp", "tensor")
    assert dspecs["blocks_0"]["mlp"]["fc2"]["kernel"] == P("tensor", "fsdp")

    with pytest.raises(ValueError, match=r"no partition rule matches parameter 'vadd/encoder/kernel'"):
        sharding.param_specs({"vadd": {"encoder": {"kernel": jnp.zeros((4, 4))}}})
    # a dimension not divisible by its axes is replicated: 11 input ids over tensor=2
    assert sharding.fit_spec(P("tensor", "fsdp"), (11, 128), mesh_sizes) == P(None, "fsdp")
    assert sharding.fit_spec(P(("data", "fsdp")), (6, 3), mesh_sizes) == P()


def flat_params_abstract(params) -> list[str]:
    return [sharding.path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def test_state_specs_follow_params():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), sharding.AXES)
    _, _, trainer = training.setup(tiny_config(), devices=jax.devices()[:1])
    specs = sharding.state_specs(jax.eval_shape(trainer._init_impl, jax.random.PRNGKey(0)), mesh)
    p = specs.params["network"]["blocks_0"]["mlp"]["fc1"]["kernel"]
    assert p == P("fsdp", "tensor")
    assert specs.ema_params["network"]["blocks_0"]["mlp"]["fc1"]["kernel"] == p
    moments = [s for path, s in jax.tree_util.tree_leaves_with_path(
        specs.opt_state, is_leaf=lambda s: isinstance(s, P)) if sharding.path_str(path) ==
        "network/blocks_0/mlp/fc1/kernel"]
    assert moments == [p, p]  # adam mu and nu
    assert specs.step == P() and specs.rng == P()


# ----------------------------------------------------------------------------- multi-host settings


def test_distributed_settings():
    assert sharding.distributed_settings(None, {}) is None
    assert sharding.initialize_distributed(None, {}) is False
    env = {"DD_COORDINATOR_ADDRESS": "10.0.0.1:1234", "DD_NUM_PROCESSES": "4", "DD_PROCESS_ID": "3"}
    assert sharding.distributed_settings(None, env) == {
        "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    flags = {"coordinator_address": "h:1", "num_processes": 2, "process_id": 0}
    assert sharding.distributed_settings(flags, env)["num_processes"] == 2  # flags win
    assert sharding.distributed_settings({**flags, "num_processes": 1, "process_id": 0}, {}) is None
    with pytest.raises(ValueError, match="--coordinator_address needs --num_processes"):
        sharding.distributed_settings({"coordinator_address": "h:1"}, {})
    with pytest.raises(ValueError, match="--num_processes=2 needs --coordinator_address"):
        sharding.distributed_settings({"num_processes": 2}, {})
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}
    assert sharding.distributed_settings(None, slurm) == {}
    assert sharding.distributed_settings(None, {**slurm, "DD_DISTRIBUTED": "0"}) is None
    assert sharding.distributed_settings(None, {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert sharding.distributed_settings(None, {"TPU_WORKER_HOSTNAMES": "a,b"}) == {}
    assert sharding.distributed_settings(None, {"TPU_WORKER_HOSTNAMES": "a"}) is None
    assert sharding.distributed_settings(None, {"DD_DISTRIBUTED": "1"}) == {}


# ----------------------------------------------------------------------------- 8 devices


_MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from test_sharding import tiny_config, flat_params
    from discrete_diffusion import training
    assert len(jax.devices()) == 8
    out = {{}}
    for mesh in [(8, 1, 1), (2, 4, 1), (2, 2, 2)]:
        config, data, trainer = training.setup(tiny_config(mesh=mesh))
        assert trainer.mesh.devices.shape == mesh
        state = trainer.init_state(0)
        losses = []
        for _ in range(3):
            state, m = trainer.train_step(state, next(data.train_iter))
            losses.append(float(m["loss"]))
        name = "x".join(map(str, mesh))
        out[name] = losses
        np.savez({tmp!r} + f"/params_{{name}}.npz", **flat_params(state.params))
        leaves = jax.tree.leaves(state.params) + jax.tree.leaves(state.opt_state)
        for axis in ("fsdp", "tensor"):
            sharded = [x for x in leaves if x.ndim and axis in str(x.sharding.spec)
                       and x.addressable_shards[0].data.shape != x.shape]
            out[name + "_" + axis] = len(sharded)
        if mesh == (2, 4, 1):
            mngr = training.checkpoint_manager({tmp!r}, config)
            training.save_checkpoint(mngr, state, data.train_iter)
            mngr.wait_until_finished()
            saved = flat_params(state.params)
            _, _, exp8 = training.setup(tiny_config(mesh=(8, 1, 1)))
            restored, ok = training.restore_checkpoint(mngr, exp8.abstract_state(), data.train_iter)
            mngr.close()
            assert ok and int(restored.step) == 3
            got = flat_params(restored.params)
            out["restore_8x1x1_max_diff"] = max(float(np.max(np.abs(saved[k] - got[k]))) for k in saved)
            pairs = zip(jax.tree.leaves(restored), jax.tree.leaves(exp8.state_shardings))
            out["restore_8x1x1_sharding_ok"] = all(a.sharding == b for a, b in pairs)
    print(json.dumps(out))
    """
)


def _restore_params(workdir, step: int) -> dict[str, np.ndarray]:
    """The parameters of a run's latest checkpoint (at `step`), restored onto this process's
    single device, whatever mesh saved them."""
    config, _, trainer = training.setup(tiny_config(), devices=jax.devices()[:1])
    mngr = training.checkpoint_manager(str(workdir), config)
    try:
        state, ok = training.restore_checkpoint(mngr, trainer.abstract_state())
    finally:
        mngr.close()
    assert ok and int(state.step) == step
    return flat_params(state.params)


def test_meshes_match_one_device_and_checkpoints_move(tmp_path):
    script = _MESH_SCRIPT.format(root=ROOT, tests=TESTS, tmp=str(tmp_path))
    res = run_python(script, devices=8)
    out = json.loads(res.stdout.strip().splitlines()[-1])

    config, data, trainer = training.setup(tiny_config(), devices=jax.devices()[:1])
    state = trainer.init_state(0)
    ref_losses = []
    for _ in range(3):
        state, m = trainer.train_step(state, next(data.train_iter))
        ref_losses.append(float(m["loss"]))
    ref = flat_params(state.params)
    for name in ("8x1x1", "2x4x1", "2x2x2"):
        np.testing.assert_allclose(out[name], ref_losses, rtol=1e-5, atol=1e-6, err_msg=name)
        # 3 AdamW steps amplify reduction-order differences where a gradient is near zero
        assert_trees_close(dict(np.load(tmp_path / f"params_{name}.npz")), ref, atol=2e-5)
    assert out["2x4x1_fsdp"] > 0 and out["2x2x2_fsdp"] > 0 and out["2x2x2_tensor"] > 0
    assert out["8x1x1_fsdp"] == 0 and out["8x1x1_tensor"] == 0
    assert out["restore_8x1x1_max_diff"] == 0.0 and out["restore_8x1x1_sharding_ok"]

    # the (2, 4, 1) checkpoint restores on this process's single device
    assert_trees_close(_restore_params(tmp_path, 3), dict(np.load(tmp_path / "params_2x4x1.npz")),
                       rtol=0, atol=0)


# ----------------------------------------------------------------------------- 2 processes


def test_two_processes_match_one(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--num_processes=2",
           "--timeout=200", "--config=configs/synthetic_absorbing.py",
           f"--workdir={tmp_path / 'two'}", *cli_overrides(5)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(0))  # one device per process
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    # meanwhile, the same run in this process (one process, one device)
    training.train_and_evaluate(tiny_config(num_steps=5), str(tmp_path / "one"), devices=jax.devices()[:1])
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-4000:]
    assert "[p0]" in log and "[p1]" in log and "devices: 2" in log

    def losses(workdir):
        rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["kind"] == "train"]

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 5
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    assert_trees_close(_restore_params(tmp_path / "two", 5), _restore_params(tmp_path / "one", 5), atol=2e-5)


def test_launcher_fails_when_a_process_fails(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--num_processes=2",
           "--module=json.tool", "--timeout=60", str(tmp_path / "missing.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=ROOT)
    # both processes fail; the launcher stops the other at the first failure, so either one's
    # prefixed output may be the one that got through
    assert res.returncode != 0 and ("[p0]" in res.stdout or "[p1]" in res.stdout), res.stdout


# ----------------------------------------------------------------------------- precision, remat


def test_bfloat16_keeps_float32_weights_and_loss():
    config, data, trainer = training.setup(tiny_config(), devices=jax.devices()[:1])
    state = trainer.init_state(0)
    for _ in range(5):  # train a little in float32 so the logits are not all zero
        state, _ = trainer.train_step(state, next(data.train_iter))
    c16 = tiny_config()
    c16.model.dtype = "bfloat16"
    c16.process.num_classes = config.process.num_classes
    exp16 = training.get_trainer(c16, int(data.num_classes), int(data.seq_len), jax.devices()[:1])
    batch = trainer.shard_batch(next(data.train_iter))
    key = jax.random.PRNGKey(3)
    n32 = float(trainer._eval_step(state.params, batch, key)["samples"]["nelbo"].sum())
    n16 = float(exp16._eval_step(state.params, batch, key)["samples"]["nelbo"].sum())
    assert np.isfinite(n16) and abs(n16 - n32) < 0.02 * abs(n32)
    logits = exp16.method.network(state.params, batch["tokens"], jnp.full((16,), 0.5))
    assert logits.dtype == jnp.float32

    s16 = exp16.init_state(0)
    s16, m = exp16.train_step(s16, next(data.train_iter))
    assert np.isfinite(float(m["loss"])) and jnp.asarray(m["loss"]).dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((s16.params, s16.ema_params)))


def test_remat_gives_the_same_step():
    config, data, trainer = training.setup(tiny_config(), devices=jax.devices()[:1])
    cr = tiny_config()
    cr.model.remat = True
    cr.process.num_classes = config.process.num_classes
    expr = training.get_trainer(cr, int(data.num_classes), int(data.seq_len), jax.devices()[:1])
    batch = next(data.train_iter)
    s, m = trainer.train_step(trainer.init_state(0), batch)
    sr, mr = expr.train_step(expr.init_state(0), batch)
    np.testing.assert_allclose(float(mr["loss"]), float(m["loss"]), rtol=1e-6)
    assert_trees_close(flat_params(sr.params), flat_params(s.params))
