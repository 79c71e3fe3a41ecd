"""The methods seam: a method defined here, outside the package, is trained, evaluated and
sampled by `python -m discrete_diffusion.main` through a config (this file is also that config),
and the built-in methods are chosen by `config.method.name`.

    python -m discrete_diffusion.main --config=tests/test_methods.py --workdir=/tmp/table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import discrete_diffusion as dd
from discrete_diffusion import config_validation, methods, training
from discrete_diffusion.methods.base import MethodBase, token_weights, with_sampler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FreeTableMethod(MethodBase):
    """Masked diffusion whose 'network' is a free table of logits per position, theta [L, K],
    the same at every x_t and t (so its optimum is the per-position marginal of the data), trained
    by the masked NELBO; `frozen` is a parameter that a second optimizer keeps fixed."""

    name = "free_table"
    partition_rules = ((r"(^|/)(table|frozen)$", P()),)
    samples_with_config_sampler = True

    def __init__(self, config: ml_collections.ConfigDict, num_classes: int):
        self.config = config
        self.k = num_classes
        self.proc = dd.processes.from_config(config.process)

    def init(self, key, example_batch):
        L = example_batch["tokens"].shape[-1]
        return {"table": 0.01 * jax.random.normal(key, (L, self.k)), "frozen": jnp.ones((3,))}

    def optimizer(self, training_config, default):
        return training.by_top_level_key({"frozen": optax.set_to_zero()}, default)

    def model_fn(self, params):
        return lambda x_t, t, **_: jnp.broadcast_to(params["table"], x_t.shape + (self.k,))

    def _nelbo(self, params, x0, key, t):
        x_t = self.proc.sample_marginal(key, x0, t[:, None])
        logits = self.model_fn(params)(x_t, t) + 0.0 * params["frozen"].sum()
        return dd.losses.masked_nelbo(self.proc, logits, x0, x_t, t[:, None])

    def loss(self, params, batch, key, *, train, step):
        k_t, k_x = jax.random.split(key)
        x0, w = batch["tokens"], token_weights(batch)
        t = jax.random.uniform(k_t, x0.shape[:1], minval=1e-3, maxval=1.0)
        nelbo = self._nelbo(params, x0, k_x, t) * w
        entropy = -jnp.sum(jax.nn.softmax(params["table"]) * jax.nn.log_softmax(params["table"]))
        return jnp.sum(nelbo) / nelbo.size, {"nelbo": nelbo, "weights": w,
                                             "metrics": {"table_entropy": entropy}}

    def nelbo_samples(self, params, batch, key, num_t):
        return methods.stratified.nelbo_samples(
            key, lambda k, x0, t: self._nelbo(params, x0, k, t), batch["tokens"], num_t, 1e-3,
            weights=token_weights(batch))

    def generate(self, params, key, num_samples, seq_len, sampler_config=None, **prompt):
        config = with_sampler(self.config, sampler_config)
        return dd.sampling.generate(key, self.model_fn(params), config, num_samples, seq_len,
                                    **prompt)


def get_config() -> ml_collections.ConfigDict:
    """The config `main` reads from this file: the synthetic corpus, the method above."""
    sys.path.insert(0, ROOT)
    from configs import synthetic_absorbing

    config = synthetic_absorbing.get_config()
    config.method.name = f"{os.path.abspath(__file__)}:FreeTableMethod"
    config.process.schedule = "linear"
    config.data.seq_len = 8
    config.data.synthetic_vocab_size = 6
    config.data.num_train_sequences = 512
    config.data.num_eval_sequences = 64
    config.data.num_threads = 1
    config.training.batch_size = 32
    config.training.num_steps = 60
    config.training.learning_rate = 0.1
    config.training.warmup_steps = 0
    config.training.log_every = 20
    config.training.eval_every = 60
    config.training.eval_batches = 1
    config.training.sample_every = 60
    config.training.checkpoint_every = 30
    config.training.ema_decay = 0.0
    config.sampler.num_steps = 8
    config.eval.num_samples = 8
    config.eval.steps = (4,)
    config.eval.temperatures = (1.0,)
    config.eval.top_ps = (1.0,)
    config.eval.samplers = "ancestral"
    config.eval.frontier = True  # the sweep is asked for explicitly (the default eval: NELBO + samples)
    return config


def _main(args: list[str], workdir) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "discrete_diffusion.main", f"--config={__file__}",
           f"--workdir={workdir}", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_a_method_defined_outside_the_package_trains_evaluates_and_samples(tmp_path):
    res = _main([], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "method: free_table" in res.stdout
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [20, 40, 60]
    assert "table_entropy" in train[0]  # the method's own metric is logged
    assert train[-1]["loss"] < train[0]["loss"]
    assert train[-1]["table_entropy"] < train[0]["table_entropy"]  # the table sharpens
    assert any(r["kind"] == "eval" and np.isfinite(r["eval_bpt"]) for r in rows)
    assert (tmp_path / "samples" / "step_60.txt").stat().st_size > 0
    for mode in ("eval", "sample"):
        res = _main([f"--mode={mode}"], tmp_path)
        assert res.returncode == 0, (mode, res.stderr[-3000:])
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["step"] == 60
    assert (tmp_path / "eval" / "frontier.json").exists()

    # the checkpoint holds the method's own parameters; the frozen group never moved
    config, data, trainer, state = training.load_state(get_config(), str(tmp_path))
    assert set(state.params) == {"table", "frozen"}
    np.testing.assert_array_equal(np.asarray(state.params["frozen"]), np.ones(3))
    # the free table learns the per-position marginals of the data: its NELBO is below that of
    # the uniform table (log K nats per token at every masked position)
    ev = trainer.evaluate(state.params, data.eval_batches(1))
    assert ev["eval_nelbo"] < np.log(data.num_classes) - 0.1


def test_method_name_defaults_and_errors():
    sys.path.insert(0, ROOT)
    from configs import synthetic_absorbing, synthetic_ar

    assert methods.method_name(synthetic_absorbing.get_config()) == "diffusion"
    assert methods.method_name(synthetic_ar.get_config()) == "autoregressive"
    bare = ml_collections.ConfigDict({"model": {"name": "dit"}})
    assert methods.method_name(bare) == "diffusion"
    config = synthetic_absorbing.get_config()
    config.method.name = "duo_v9"
    with pytest.raises(ValueError, match=r"config.method.name='duo_v9' is not one of \['diffusion'"):
        config_validation.validate(config)
    config.method.name = "no_such_module_xyz:Thing"
    with pytest.raises(ValueError, match="config.method.name='no_such_module_xyz:Thing': cannot load"):
        config_validation.validate(config)
    methods.register("table_for_test", FreeTableMethod)
    config.method.name = "table_for_test"
    config.process.num_classes = 5
    assert isinstance(methods.get(config, 5), FreeTableMethod)


def test_an_incomplete_method_is_refused():
    class Incomplete:
        def __init__(self, config, num_classes):
            pass

    methods.register("incomplete_for_test", Incomplete)
    config = get_config()
    config.method.name = "incomplete_for_test"
    with pytest.raises(TypeError, match="lacks .*'init'.*MethodBase"):
        methods.get(config, 5)


def test_a_parameter_without_a_partition_rule_names_its_path():
    class Unruled(FreeTableMethod):
        partition_rules = ()

    methods.register("unruled_for_test", Unruled)
    config = get_config()
    config.method.name = "unruled_for_test"
    config.process.num_classes = 6
    with pytest.raises(ValueError, match="no partition rule matches parameter 'frozen'"):
        training.Trainer(config, 6, 8)
