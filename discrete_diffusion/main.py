"""Command-line entry point.

    python -m discrete_diffusion.main --config=configs/shakespeare_absorbing.py --workdir=/tmp/run \
        [--mode=train|eval|sample] [--config.training.num_steps=10 ...]

train: trains (resuming from workdir/checkpoints); eval: held-out NELBO, sample quality and the
frontier sweep of the latest checkpoint into workdir/eval (discrete_diffusion/evaluation/report.py);
sample: writes samples of the latest checkpoint to workdir/samples/step_N.txt.

Several processes (one per host or GPU): `--coordinator_address=HOST:PORT --num_processes=N
--process_id=I` (or DD_COORDINATOR_ADDRESS / DD_NUM_PROCESSES / DD_PROCESS_ID), or nothing under
SLURM / on a TPU pod; see launch/ and discrete_diffusion/sharding.py.

Exit status: 0 done (or stopped by SIGTERM, SIGHUP, a first Ctrl-C or max_train_minutes after
saving a checkpoint; a second Ctrl-C exits at once with 130); 1 an error (a bad config field, a
workdir that is a file or read-only, ...); 3 training stopped after
config.training.max_nonfinite_steps consecutive non-finite steps (the message names the step and
the last good checkpoint); 4 checkpoints exist in workdir/checkpoints but none can be read (they
were set aside under workdir/checkpoints/corrupt/; config.training.start_fresh_if_unreadable=True
starts from step 0 instead); 5 the config changes the model, method or data of the workdir's
(the fields are listed; nothing is moved); 6 another run holds the workdir's lock; 7 a checkpoint
could not be written (a full disk); 8 the training data could not be read. See
discrete_diffusion/training/faults.py.
"""

from __future__ import annotations

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # so that configs/*.py can `from configs import base`
    sys.path.insert(0, _ROOT)

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from discrete_diffusion import config_fields, config_validation, sharding  # noqa: E402

FLAGS = flags.FLAGS
# every declared sampler field settable as --config.sampler.FIELD; unknown fields refused in one line
config_fields.define_config_flag("config", "Experiment config file (configs/*.py).")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl and samples.")
flags.DEFINE_enum("mode", "train", list(config_validation.MODES), "What to run.")
# Multi-host (see discrete_diffusion/sharding.py and launch/): unset = the DD_* environment
# variables, or jax's own detection on SLURM / TPU pods, or a single process.
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 for jax.distributed (env DD_COORDINATOR_ADDRESS).")
flags.DEFINE_integer("num_processes", None, "Number of processes (env DD_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes) (env DD_PROCESS_ID).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    sharding.initialize_distributed(FLAGS)  # before anything touches the devices
    config = FLAGS.config
    config_validation.validate(config)
    from discrete_diffusion import training  # heavy imports after validation

    try:
        if FLAGS.mode == "train":
            training.train_and_evaluate(config, FLAGS.workdir)
        elif FLAGS.mode == "eval":  # likelihood, sample quality and the frontier: workdir/eval/
            from discrete_diffusion.evaluation import report

            report.evaluate_workdir(config, FLAGS.workdir)
        else:
            training.sample_checkpoint(config, FLAGS.workdir)
    except training.TrainingStoppedError as err:  # a message, not a traceback; a distinct status
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves on a first one)
        print(f"interrupted (--mode={FLAGS.mode}); the newest checkpoint in {FLAGS.workdir} is "
              "unchanged", file=sys.stderr, flush=True)
        sys.exit(130)
    from discrete_diffusion.training import summary  # why it stopped, final metrics, paths written

    if jax.process_index() == 0:
        reason = training.loop.last_stop_reason() if FLAGS.mode == "train" else None
        print(summary.summary(FLAGS.workdir, FLAGS.mode, config, reason), flush=True)


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
