"""The training loop: data, the trainer, metrics, evaluation, samples and checkpoints.

    state = training.train_and_evaluate(config, workdir)   # resumes from workdir/checkpoints

Every `log_every` steps the merged clu metrics are written by `metrics.MetricWriter` (console,
workdir/metrics.jsonl, workdir/tensorboard); every `eval_every` steps the held-out NELBO of the
EMA parameters; every `sample_every` steps samples to workdir/samples/step_N.txt; checkpoints
every `checkpoint_every` steps, at the end, at `max_train_minutes` and on SIGTERM.

Faults (discrete_diffusion/training/faults.py):
- on start, the newest readable checkpoint is restored; unreadable newer ones are reported and set
  aside under workdir/checkpoints/corrupt/ (`checkpoints.restore_latest_readable`). When
  checkpoints exist but none is readable the run stops (`UnreadableCheckpointError`) unless
  `config.training.start_fresh_if_unreadable` is True;
- a step with a non-finite loss or gradient norm leaves the parameters unchanged (trainer.py) and
  is logged with the running count; `config.training.max_nonfinite_steps` of them in a row stop
  the run (`NonFiniteTrainingError`, naming the step and the last good checkpoint). No checkpoint
  is written while the last step was non-finite, nor from a state with a non-finite value.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from typing import Any

import jax
import numpy as np

from discrete_diffusion import progress, run_files, sharding
from discrete_diffusion.data import bundle as data_lib
from discrete_diffusion.data import words
from discrete_diffusion.metrics import MetricWriter, TrainMetrics, with_derived
from discrete_diffusion.sampling import trace
from discrete_diffusion.sampling.finite_guard import NonFiniteSamplingError
from discrete_diffusion.training import config_drift, quiet_orbax, trace_files, workdir_lock
from discrete_diffusion.training import workdir as workdir_lib
from discrete_diffusion.training.checkpoints import (
    CORRUPT_DIR,
    MISMATCH_REASONS,
    checkpoint_dir,
    checkpoint_manager,
    restore_latest_readable,
    save_checkpoint,
)
from discrete_diffusion.training.faults import (
    CheckpointWriteError,
    DataReadError,
    NonFiniteMonitor,
    UnreadableCheckpointError,
)
from discrete_diffusion.training.state import TrainState
from discrete_diffusion.training.trainer import Trainer, get_trainer

# ----------------------------------------------------------------------------- setup helpers


def setup(config: Any, devices: list | None = None):
    """(config with num_classes filled in, data bundle, trainer)."""
    data = data_lib.get_data(config)
    config = config.copy_and_resolve_references()
    with config.unlocked():
        k = config.process.get("num_classes", None)
        if k is None:
            config.process.num_classes = int(data.num_classes)
        elif int(k) != int(data.num_classes):
            raise ValueError(
                f"config.process.num_classes={k} does not match the data's {data.num_classes} classes"
            )
    trainer = get_trainer(config, int(data.num_classes), int(data.seq_len), devices,
                          int(data.num_labels or 0))
    return config, data, trainer


def write_samples(workdir: str | None, step: int, texts: list[str], name: str | None = None) -> None:
    """Prints `texts` and writes them to workdir/samples/`name` (default step_{step}.txt)."""
    body = "\n\n".join(f"--- sample {i} ---\n{s}" for i, s in enumerate(texts))
    if jax.process_index() == 0:
        print(f"[samples] step {step}:\n{body}", flush=True)
    if workdir and jax.process_index() == 0:
        d = os.path.join(workdir, "samples")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name or f"step_{step}.txt"), "w") as f:
            f.write(body + "\n")


def sample_and_write(trainer: Trainer, data: Any, params, workdir, step: int,
                     seed: int, name: str | None = None) -> list[str]:
    n = int(trainer.config.training.get("num_samples", 4))
    key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), step)
    record = jax.process_count() == 1  # a recorder sees this process's arrays only
    sampler = trainer.config.sampler  # network calls to expect, for the progress line
    calls = int(data.seq_len) if "first_hitting" in sampler.name else int(sampler.num_steps)
    with trace.recording(calls) if record else contextlib.nullcontext() as recorder:
        res = trainer.generate(params, key, n, int(data.seq_len))
    tokens = sharding.to_host(res.tokens)
    texts = [data.tokenizer.decode(row.tolist()) for row in tokens]
    write_samples(workdir, step, texts, name)
    if jax.process_index() == 0:
        real = words.real_word_line(data, texts)
        if real:
            print(f"[samples] {real}", flush=True)
        if workdir and recorder is not None:
            trace_files.write_beside_samples(recorder.trajectory(tokens), data, workdir,
                                             name or f"step_{step}.txt")
    return texts


# ----------------------------------------------------------------------------- the loop


_STOP: dict[str, Any] = {"signal": None}
# Why the last `train_and_evaluate` of this process ended before num_steps (None: it did not),
# for the end-of-run summary (`training.summary`).
_ENDED: dict[str, str | None] = {"reason": None}


def last_stop_reason() -> str | None:
    """Why this process's last training run stopped before config.training.num_steps: a stop
    signal, max_train_minutes or `stop_at`, in words; None when it ran to num_steps."""
    return _ENDED["reason"]
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


def _on_stop_signal(signum, frame):  # noqa: ARG001
    """SIGTERM, SIGHUP and a first SIGINT: stop after this step, saving a checkpoint. A second
    SIGINT (Ctrl-C pressed again) exits at once without saving (the newest checkpoint stays:
    orbax renames a checkpoint into place only once it is complete)."""
    name = signal.Signals(signum).name
    if _STOP["signal"] is not None and name == "SIGINT":
        os.write(2, b"second SIGINT: exiting now without saving a checkpoint\n")
        os._exit(130)
    _STOP["signal"] = name
    hint = " (press Ctrl-C again to exit at once)" if name == "SIGINT" else ""
    os.write(2, f"{name}: saving a checkpoint after this step, then exiting{hint}\n".encode())


def _install_stop_handlers() -> dict:
    """Installs `_on_stop_signal` for STOP_SIGNALS (main thread only); returns the old ones."""
    old = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        with contextlib.suppress(ValueError):  # ValueError: not the main thread
            old[sig] = signal.signal(sig, _on_stop_signal)
    _STOP["signal"] = None
    return old


def _complete_steps(workdir: str) -> list[int]:
    """Steps of the complete checkpoints on disk (orbax's temporary directories excluded)."""
    d = checkpoint_dir(workdir)
    return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


def _write_error(err: BaseException, workdir: str, step: int) -> CheckpointWriteError:
    """One line for a failed (asynchronous) checkpoint save of `step`."""
    chain, e = [], err
    while e is not None and len(chain) < 20:
        chain.append(e)
        e = e.__cause__ or e.__context__
    full = next((c for c in chain if isinstance(c, OSError) and c.errno == errno.ENOSPC), None)
    text = " ".join(str(c) for c in chain)
    why = ("no space left on device" if full is not None or "No space left" in text
           else f"{type(err).__name__}: {' '.join(str(err).split())[:200]}")
    kept = _complete_steps(workdir)
    return CheckpointWriteError(
        f"could not write the checkpoint of step {step} to {checkpoint_dir(workdir)}: {why} "
        f"({workdir_lib.free_space(workdir)}); the newest complete checkpoint is "
        f"{'step ' + str(kept[-1]) if kept else 'none'} (kept). Free space, then rerun the same "
        "command to resume from it."
    )


def _resume_fields(config: Any, workdir: str | None) -> dict:
    """The accepted config changes against the workdir's (ConfigDriftError for refused ones);
    checked only when the workdir holds checkpoints (there is nothing to protect otherwise)."""
    if not workdir or not (_complete_steps(workdir) or os.path.isdir(
            os.path.join(checkpoint_dir(workdir), CORRUPT_DIR))):
        return {}
    return config_drift.check_resume(workdir, config)


def train_and_evaluate(
    config: Any, workdir: str | None, devices: list | None = None, stop_at: int | None = None
) -> TrainState:
    """Trains `config.training.num_steps` steps (resuming from workdir/checkpoints) and returns
    the final state. Saves a checkpoint every checkpoint_every steps, at the end, and on SIGTERM,
    SIGHUP or a first SIGINT. `stop_at` ends the run early at that step (saving a checkpoint), as
    an interruption would.

    Before anything in the workdir is written: `workdir.prepare` (WorkdirError: a file, or
    read-only), the workdir lock on process 0 (`workdir_lock.WorkdirLockedError` naming the run
    holding it) and the config against the workdir's (`config_drift.ConfigDriftError` for a
    change of model, method or data). Raises `faults.UnreadableCheckpointError` when checkpoints
    exist but none can be read (unless config.training.start_fresh_if_unreadable),
    `faults.NonFiniteTrainingError` after config.training.max_nonfinite_steps consecutive
    non-finite steps, `faults.CheckpointWriteError` when a checkpoint cannot be written and
    `faults.DataReadError` when the training data cannot be read (after saving the last step)."""
    lock = None
    if workdir:
        workdir = workdir_lib.prepare(workdir)
        if jax.process_index() == 0:
            lock = workdir_lock.acquire(workdir, log=lambda m: print(m, flush=True))
    try:
        with quiet_orbax.errors_shortened(), quiet_orbax.closed_loop_tracebacks_dropped():
            return _train(config, workdir, devices, stop_at, lock)
    finally:
        if lock is not None:
            lock.release()


def _train(config: Any, workdir: str | None, devices: list | None, stop_at: int | None,
           lock: Any) -> TrainState:
    _ENDED["reason"] = None
    config, data, trainer = setup(config, devices)
    tc = config.training
    changes = _resume_fields(config, workdir)  # reads only: nothing is moved or written before
    state = trainer.init_state(int(tc.seed))
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    print(f"method: {trainer.method.name}; {n_params:,} parameters; devices: {trainer.mesh.devices.size}; "
          f"data: {data.info.get('name')} K={data.num_classes} L={data.seq_len}", flush=True)
    if "entropy_rate" in data.info:
        floor = float(data.info["sequence_entropy"]) / int(data.seq_len)
        print(f"data entropy rate: {data.info['entropy_rate']:.4f} nats/token; the NELBO floor for "
              f"length-{data.seq_len} sequences, H(x_1:L)/L: {floor:.4f} nats/token", flush=True)

    mngr = checkpoint_manager(workdir, config) if workdir else None
    last_saved: list[int] = []  # steps of the checkpoints this run started from or wrote
    resumed = None
    if mngr is not None:
        found = restore_latest_readable(mngr, state, data.train_iter)
        state = found.state
        mismatched = [u for u in found.unreadable if u[1] in MISMATCH_REASONS]
        if found.step is None and mismatched:
            mngr.close()
            raise config_drift.ConfigDriftError(
                f"cannot resume {workdir}: the checkpoints do not fit this config's model "
                f"({found.describe_unreadable()}); nothing was moved. Run with the config they "
                "were trained with, or start a new run with a new --workdir.")
        if found.step is not None:
            resumed = found.step
            last_saved.append(found.step)
            print(f"resumed from step {found.step}", flush=True)
        else:
            # None readable now, or none left because an earlier start set them all aside: either
            # way starting from step 0 would silently throw the run away.
            where = os.path.join(checkpoint_dir(workdir), CORRUPT_DIR)
            earlier = sorted(os.listdir(where)) if os.path.isdir(where) else []
            if found.unreadable or earlier:
                if not bool(tc.get("start_fresh_if_unreadable", False)):
                    mngr.close()
                    what = (found.describe_unreadable() if found.unreadable else
                            f"the checkpoints set aside earlier as unreadable: {earlier}")
                    raise UnreadableCheckpointError(
                        f"no readable checkpoint in {checkpoint_dir(workdir)}: {what}. They lie "
                        f"under {where} (nothing was deleted). Move a good one back to "
                        f"{checkpoint_dir(workdir)}/<step>, or pass "
                        "--config.training.start_fresh_if_unreadable=True to start from step 0."
                    )
                print(f"no readable checkpoint (unreadable ones lie under {where}); starting from "
                      "step 0 as config.training.start_fresh_if_unreadable=True", flush=True)
    if workdir and jax.process_index() == 0:
        # the resolved config (for evaluation and AR judges later), and its history
        config_drift.record(workdir, config, resumed, changes)
        if changes:
            print(f"config changed since the last run of this workdir (accepted): "
                  f"{config_drift.describe(changes)}", flush=True)
        moved = workdir_lib.rewind_metrics(workdir, resumed or 0)
        if moved:
            print(f"{moved} line(s) of metrics.jsonl were of steps after the checkpoint resumed "
                  f"(step {resumed or 0}); moved to {workdir_lib.REWOUND_FILE}", flush=True)
    writer = MetricWriter(workdir)

    def last_good_checkpoint() -> str:
        if not last_saved:
            return "none (no checkpoint was written from a finite state)"
        return f"{os.path.join(checkpoint_dir(workdir), str(last_saved[-1]))} (step {last_saved[-1]})"

    monitor = NonFiniteMonitor(
        int(tc.get("max_nonfinite_steps", 3)), last_good_checkpoint,
        log=lambda step, values: writer.write(step, values, prefix="nonfinite"),
    )

    def checkpoint() -> None:
        monitor.flush()
        if monitor.in_streak:
            print(f"not saving a checkpoint at step {step}: the step was not finite (the last "
                  f"good checkpoint stays {last_good_checkpoint()})", flush=True)
            return
        # the state of a finite step (or the restored, checked one) is finite: see trainer.py
        try:
            saved = save_checkpoint(mngr, state, data.train_iter, finite=True)
        except Exception as err:  # noqa: BLE001 - this save, or an earlier asynchronous one, failed
            with contextlib.suppress(Exception):
                mngr.wait_until_finished()
            earlier_ok = not last_saved or last_saved[-1] in _complete_steps(workdir)
            raise _write_error(err, workdir, step if earlier_ok else last_saved[-1]) from None
        if saved:
            last_saved.append(step)

    num_steps = int(tc.num_steps)
    step = int(jax.device_get(state.step))
    if step >= num_steps:
        print(f"nothing to train: the checkpoint is at step {step}, config.training.num_steps="
              f"{num_steps}; pass a larger --config.training.num_steps to train further",
              flush=True)
        if mngr is not None:
            mngr.close()
        writer.close()
        return state

    first_step = step
    old_handlers = _install_stop_handlers()
    log_every, eval_every = int(tc.log_every), int(tc.eval_every)
    sample_every, ckpt_every = int(tc.sample_every), int(tc.checkpoint_every)
    B, L = int(tc.batch_size), int(data.seq_len)
    pending: TrainMetrics | None = None  # merged clu metrics of the steps since the last log line
    t_last, steps_since = time.time(), 0
    # config.training.max_train_minutes > 0: stop (with eval, samples, checkpoint) when time is up.
    max_seconds, t_start = 60.0 * float(tc.get("max_train_minutes", 0.0)), time.time()
    failed = False
    try:
        while step < num_steps:
            try:
                batch = next(data.train_iter)
            except Exception as err:  # noqa: BLE001 - a data error ends the run after a save
                raise _data_error(err, data, step, mngr, checkpoint, last_saved) from None
            state, metrics, health = trainer.train_step_checked(state, batch)
            step += 1
            monitor.push(step, health)  # records the previous step's health (one in flight)
            if lock is not None:
                lock.heartbeat()
            steps_since += 1
            out_of_time = max_seconds > 0 and time.time() - t_start > max_seconds
            last = step == num_steps or out_of_time
            stop = _STOP["signal"]
            pending = metrics if pending is None else pending.merge(metrics)
            if last or stop or (stop_at is not None and step >= stop_at):
                monitor.flush()  # raises NonFiniteTrainingError after too many in a row
            if step % log_every == 0 or last or stop:
                avg = with_derived(jax.device_get(pending.compute()))
                dt = time.time() - t_last
                avg["steps_per_s"] = steps_since / dt
                avg["tokens_per_s"] = steps_since * B * L / dt
                writer.write(step, avg)
                if mngr is not None and last_saved and last_saved[-1] != resumed:
                    try:  # a failed asynchronous save is noticed here, not only at the next save
                        mngr.check_for_errors()
                    except Exception as err:  # noqa: BLE001
                        with contextlib.suppress(Exception):  # its other threads end first
                            mngr.wait_until_finished()
                        raise _write_error(err, workdir, last_saved[-1]) from None
                if jax.process_index() == 0:  # the ETA against num_steps and max_train_minutes
                    print("[train] " + progress.line(
                        "progress", step, num_steps, time.time() - t_start, unit="step",
                        rate=avg["steps_per_s"], budget_s=max_seconds), flush=True)
                pending, t_last, steps_since = None, time.time(), 0
            if eval_every > 0 and (step % eval_every == 0 or last):
                ev = trainer.evaluate(state.ema_params, data.eval_batches(int(tc.eval_batches)), int(tc.seed))
                ev.update(data_lib.per_character(ev, data.info))  # text: bits per character
                if "entropy_rate" in data.info:  # gap to the exact floor H(x_1:L)/L
                    ev["eval_floor"] = float(data.info["sequence_entropy"]) / int(data.seq_len)
                    ev["eval_gap"] = ev["eval_nelbo"] - ev["eval_floor"]
                writer.write(step, ev, prefix="eval")
            if sample_every > 0 and (step % sample_every == 0 or last):
                try:
                    sample_and_write(trainer, data, state.ema_params, workdir, step, int(tc.seed))
                except NonFiniteSamplingError as err:  # training goes on; the samples are said
                    print(f"[samples] step {step}: none written: {err}", flush=True)
            stop = _STOP["signal"]  # a signal may have come during eval or sampling
            if mngr is not None and (
                (ckpt_every > 0 and step % ckpt_every == 0) or last or stop
            ):
                checkpoint()
            if stop_at is not None and step >= stop_at and not stop:
                if mngr is not None and not (ckpt_every > 0 and step % ckpt_every == 0):
                    checkpoint()
                _ENDED["reason"] = f"stopped at step {stop_at} as asked (stop_at)"
                break
            if stop:
                if last_saved and last_saved[-1] == step or mngr is None:
                    print(f"{stop}: saved step {step}, exiting", flush=True)
                else:
                    print(f"{stop} at step {step} (not saved: the step was not finite; the last "
                          f"good checkpoint is {last_good_checkpoint()}), exiting", flush=True)
                _ENDED["reason"] = f"{stop} received; rerun the same command to continue"
                break
            if out_of_time:
                print(f"config.training.max_train_minutes reached at step {step}", flush=True)
                _ENDED["reason"] = (f"config.training.max_train_minutes={tc.max_train_minutes} "
                                    "reached; rerun the same command to train that long again")
                break
            if step == first_step + 1:
                t_last, steps_since = time.time(), 0  # exclude compilation from throughput
    except BaseException:
        failed = True
        raise
    finally:
        if mngr is not None:
            try:
                mngr.wait_until_finished()
            except Exception as err:  # noqa: BLE001 - the last asynchronous save failed
                if not failed:
                    raise _write_error(err, workdir, last_saved[-1] if last_saved else step) from None
            finally:
                with contextlib.suppress(Exception):
                    mngr.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        writer.close()
    return state


def _data_error(err: Exception, data: Any, step: int, mngr: Any, checkpoint: Any,
                last_saved: list[int]) -> DataReadError:
    """Saves step `step` (the last one trained) and returns the one-line DataReadError naming
    the data's files."""
    where = data.info.get("dataset_dir") or data.info.get("data_dir") or data.info.get("name")
    text = " ".join(str(err).split())
    saved = "no checkpoint (no workdir)"
    if mngr is not None:
        if not last_saved or last_saved[-1] != step:
            with contextlib.suppress(Exception):
                checkpoint()
                mngr.wait_until_finished()
        saved = (f"saved step {step} first" if last_saved and last_saved[-1] == step
                 else f"the newest checkpoint is step {last_saved[-1] if last_saved else 'none'}")
    return DataReadError(
        f"reading the training data ({where}) failed after step {step}: "
        f"{type(err).__name__}: {text[:300]}; {saved}. Check or re-prepare the data files, "
        "then rerun the same command to resume."
    )


# workdir/config.json is read one layer below `methods` and `training` (run_files.py)
load_config = run_files.load_config


def load_state(config: Any, workdir: str, devices: list | None = None):
    """(config, data, trainer, state restored from the latest checkpoint of workdir).

    `config_drift.ConfigDriftError` (one line, naming the fields) when `config` changes the
    model, method or data of the workdir's config.json, or its checkpoints do not fit it."""
    config, data, trainer = setup(config, devices)
    config_drift.check_resume(workdir, config, what="load a checkpoint of")
    state = trainer.init_state(int(config.training.seed))
    mngr = checkpoint_manager(workdir, config)
    try:  # read-only: an unreadable checkpoint is reported and skipped, not set aside
        found = restore_latest_readable(mngr, state, set_aside_bad=False)
    finally:
        mngr.close()
    if found.step is None and any(u[1] in MISMATCH_REASONS for u in found.unreadable):
        raise config_drift.ConfigDriftError(
            f"the checkpoints of {checkpoint_dir(workdir)} do not fit this config's model "
            f"({found.describe_unreadable()}); pass the config they were trained with")
    if found.step is None:
        detail = f": none readable ({found.describe_unreadable()})" if found.unreadable else ""
        raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}{detail}")
    return config, data, trainer, found.state


def sample_checkpoint(config: Any, workdir: str) -> list[str]:
    """--mode=sample: samples of the latest checkpoint with config.sampler.seed (None: the
    training seed) into workdir/samples/`sample_file_name` (step, sampler and seed: a new seed
    or sampler never overwrites earlier samples)."""
    config, data, trainer, state = load_state(config, workdir)
    step, seed = int(state.step), sample_seed(config)
    name = sample_file_name(step, config.sampler.get("name", "ancestral"), seed)
    return sample_and_write(trainer, data, state.ema_params, workdir, step, seed, name)


def sample_seed(config: Any) -> int:
    """config.sampler.seed, or config.training.seed when unset (the samples training wrote)."""
    seed = config.sampler.get("seed", None)
    return int(config.training.seed) if seed is None else int(seed)


def sample_file_name(step: int, sampler: str, seed: int) -> str:
    """workdir/samples/ file of --mode=sample: step_{step}_{sampler}_seed{seed}.txt."""
    return f"step_{step}_{sampler}_seed{seed}.txt"
