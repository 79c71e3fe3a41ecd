"""Faults in-process: the jitted train step skips non-finite updates (no host callback), the
monitor stops after `max_nonfinite_steps` in a row, unreadable checkpoints are set aside and an
older one restored, a non-finite state is never saved, and the new config fields are checked."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_train import tiny_config

from configs import synthetic_absorbing
from discrete_diffusion import config_validation, training
from discrete_diffusion.training import checkpoints, faults


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _assert_same(a, b) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)  # NaNs count as equal


@pytest.fixture(scope="module")
def setup():
    config, data, trainer = training.setup(tiny_config())
    batches = [next(data.train_iter) for _ in range(3)]
    return config, data, trainer, batches


def test_nonfinite_loss_leaves_the_state_unchanged(setup):
    """A NaN in one weight makes the loss and the gradients NaN: the step keeps the old
    parameters, EMA and optimizer state (bit for bit), moves the step counter, says finite=False;
    the same step from a finite state updates everything."""
    _, _, trainer, batches = setup
    state = trainer.init_state(0)
    params = jax.device_get(state.params)
    leaf_path = jax.tree_util.tree_flatten_with_path(params)[0][0][0]
    poisoned = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(x).at[(0,) * x.ndim].set(jnp.nan) if p == leaf_path else x, params)
    bad = state.replace(params=jax.device_put(poisoned, trainer.param_shardings))
    before = jax.device_get(bad)
    after, metrics, health = trainer.train_step_checked(bad, batches[0])
    assert not bool(health["finite"]) and not np.isfinite(float(health["loss"]))
    assert int(after.step) == int(before.step) + 1
    _assert_same(after.params, before.params)
    _assert_same(after.ema_params, before.ema_params)
    _assert_same(after.opt_state, before.opt_state)
    assert not np.isfinite(float(metrics["loss"]))  # logged as it was

    good_before = jax.device_get(trainer.init_state(0))
    good, _, health = trainer.train_step_checked(trainer.init_state(0), batches[0])
    assert bool(health["finite"]) and np.isfinite(float(health["grad_norm"]))
    changed = [not np.array_equal(a, b) for a, b in
               zip(_leaves(good.params), _leaves(good_before.params), strict=True)]
    assert any(changed)


def test_update_overflow_is_skipped_and_the_state_stays_finite():
    """learning_rate = 1e12: within a few steps an update overflows; from then on every step
    is skipped and the state stays what the last finite step left (finite)."""
    config = tiny_config()
    config.training.learning_rate = 1e12
    _, data, trainer = training.setup(config)
    state = trainer.init_state(0)
    flags = []
    for _ in range(8):
        prev = jax.device_get(state)
        state, _, health = trainer.train_step_checked(state, next(data.train_iter))
        flags.append(bool(health["finite"]))
        if not flags[-1]:
            _assert_same(state.params, prev.params)
            _assert_same(state.opt_state, prev.opt_state)
    assert flags[0] and not flags[-1], flags
    assert faults.is_finite_state(state)


def test_the_step_has_no_host_callback(setup):
    _, _, trainer, batches = setup
    state = trainer.abstract_state()
    batch = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype) for k, v in batches[0].items()}
    text = str(jax.make_jaxpr(trainer._train_step_impl)(state, batch))
    assert "callback" not in text and "select_n" in text


def test_monitor_stops_after_consecutive_nonfinite_steps(capsys):
    logged = []
    monitor = faults.NonFiniteMonitor(3, lambda: "/w/checkpoints/4 (step 4)",
                                      log=lambda step, values: logged.append((step, values)))

    def health(ok: bool):
        return {"finite": np.bool_(ok), "loss": np.float32(1.0 if ok else np.nan),
                "grad_norm": np.float32(1.0 if ok else np.inf)}

    for step, ok in enumerate([True, False, False, True, False, False], start=1):
        monitor.push(step, health(ok))
    monitor.flush()
    assert monitor.consecutive == 2 and monitor.total == 4 and monitor.in_streak
    assert [s for s, _ in logged] == [2, 3, 5, 6]
    assert "step 6: non-finite loss=nan or grad_norm=inf" in capsys.readouterr().out
    with pytest.raises(faults.NonFiniteTrainingError) as err:
        monitor.record(7, health(False))
    msg = str(err.value)
    assert "training stopped at step 7" in msg and "max_nonfinite_steps=3" in msg
    assert "last good checkpoint: /w/checkpoints/4 (step 4)" in msg and "(step 4)" in msg
    assert faults.NonFiniteTrainingError.exit_code == 3
    with pytest.raises(ValueError, match="config.training.max_nonfinite_steps=0"):
        faults.NonFiniteMonitor(0, lambda: "")


def _manager(config, workdir, keep: int = 10):
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.training.max_checkpoints = keep
    return training.checkpoint_manager(str(workdir), config)


def _save_steps(trainer, mngr, data, steps, state=None):
    state = trainer.init_state(0) if state is None else state
    for s in steps:
        state = state.replace(step=jnp.asarray(s, jnp.int32))
        assert checkpoints.save_checkpoint(mngr, state, data.train_iter)
    mngr.wait_until_finished()
    return state


def test_unreadable_checkpoints_are_set_aside_newest_readable_restored(setup, tmp_path, capsys):
    config, data, trainer, _ = setup
    mngr = _manager(config, tmp_path)
    state = _save_steps(trainer, mngr, data, [1, 2])
    # step 3: a NaN state written behind save_checkpoint's back (as code before the fix could)
    nan_state = state.replace(step=jnp.asarray(3, jnp.int32), params=jax.tree.map(
        lambda x: jnp.full_like(x, jnp.nan), state.params))
    assert not checkpoints.save_checkpoint(mngr, nan_state, data.train_iter)  # refused
    assert mngr.all_steps() == [1, 2]
    mngr.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(nan_state),
                                         data=ocp.args.JsonSave({}),
                                         meta=ocp.args.JsonSave({"step": 3})), force=True)
    mngr.wait_until_finished()
    # step 4: its 'data' item missing; step 2: its array metadata truncated
    _save_steps(trainer, mngr, data, [4], state)
    ckpt = tmp_path / "checkpoints"
    os.rename(ckpt / "4" / "data", tmp_path / "moved_data")
    meta = ckpt / "2" / "state" / "_METADATA"
    with open(meta, "r+b") as f:
        f.truncate(meta.stat().st_size // 2)
    mngr.reload()

    # read-only (eval/sample): skipped, not moved
    found = checkpoints.restore_latest_readable(mngr, trainer.abstract_state(), set_aside_bad=False)
    assert found.step == 1 and [r for _, r, _, _ in found.unreadable] == [
        "missing-item", "nonfinite", "truncated"]
    assert sorted(os.listdir(ckpt)) == ["1", "2", "3", "4"]
    # training: set aside under checkpoints/corrupt, reported with step and reason
    found = checkpoints.restore_latest_readable(mngr, trainer.abstract_state(), data.train_iter)
    out = capsys.readouterr().out
    assert found.step == 1 and int(found.state.step) == 1
    assert "checkpoint step 4 cannot be read (missing-item: item(s) ['data'] missing" in out
    assert "checkpoint step 2 cannot be read (truncated" in out
    assert sorted(os.listdir(ckpt / "corrupt")) == ["2-truncated", "3-nonfinite", "4-missing-item"]
    assert mngr.all_steps() == [1]
    # training goes on from step 1 (the manager forgot the steps set aside)
    _save_steps(trainer, mngr, data, [2, 3, 4], found.state)
    assert mngr.all_steps() == [1, 2, 3, 4]
    mngr.close()
    assert checkpoints.set_aside(str(ckpt), 4, "test").endswith("corrupt/4-test")


def test_shapes_that_do_not_match_are_reported_and_left_in_place(setup, tmp_path):
    """A checkpoint of another model is a config mismatch, not corruption: never set aside."""
    config, data, trainer, _ = setup
    mngr = training.checkpoint_manager(str(tmp_path), config)
    _save_steps(trainer, mngr, data, [1])
    wider = tiny_config()
    wider.model.d_model = 64
    _, _, other = training.setup(wider)
    found = checkpoints.restore_latest_readable(mngr, other.abstract_state())
    mngr.close()
    assert found.step is None and found.unreadable[0][:2] == (1, "shape-mismatch")
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_train_and_evaluate_stops_when_nothing_is_readable(setup, tmp_path):
    config, data, trainer, _ = setup
    mngr = training.checkpoint_manager(str(tmp_path), config)
    _save_steps(trainer, mngr, data, [1])
    mngr.close()
    os.remove(tmp_path / "checkpoints" / "1" / "meta" / "metadata")
    with pytest.raises(faults.UnreadableCheckpointError, match="no readable checkpoint"):
        training.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
    with pytest.raises(faults.UnreadableCheckpointError, match="set aside earlier"):
        training.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path))
    fresh = tiny_config(num_steps=2)
    fresh.training.start_fresh_if_unreadable = True
    assert int(training.train_and_evaluate(fresh, str(tmp_path)).step) == 2


@pytest.mark.parametrize("field, value, message", [
    ("max_nonfinite_steps", 0, "config.training.max_nonfinite_steps=0 must lie in [1, inf]"),
    ("max_nonfinite_steps", -1, "config.training.max_nonfinite_steps=-1 must lie in [1, inf]"),
    ("start_fresh_if_unreadable", "yes",
     "config.training.start_fresh_if_unreadable='yes' must be True or False"),
])
def test_fault_fields_are_validated(field, value, message):
    config = synthetic_absorbing.get_config()
    assert config.training.max_nonfinite_steps == 3
    assert config.training.start_fresh_if_unreadable is False
    with config.unlocked():  # replaced, not assigned (ConfigDict refuses to change a type)
        del config.training[field]
        config.training[field] = value
    with pytest.raises(ValueError) as err:
        config_validation.validate(config)
    assert message in str(err.value)
