"""Parameter-side bytes per train step: XLA's 'bytes accessed' of the compiled step at two batch
sizes, split into the part that grows with the batch and the part that does not.

    python benchmarks/train_param_bytes.py --config=configs/owt_absorbing.py --random_tokens=50257 \\
        --dtype=float32 [--batch_sizes=1,2] [--nonfinite_skip=select,cond] [--update_only] \\
        [--unguarded] [--config.model.dropout=0 ...]

The step is the library's own jitted train step (`training.Trainer._train_step_checked`), compiled
(never run) for uniform random ids; its cost analysis gives bytes(B) at each batch size B. With
two sizes B1 < B2, bytes(B) = fixed + B * per_row, so

    per_row = (bytes(B2) - bytes(B1)) / (B2 - B1),    fixed = bytes(B1) - B1 * per_row

`fixed` is what the step moves whatever the batch: the forward and backward passes' reads of the
weights and writes of their gradients, and the optimizer update, the EMA and the finiteness check
(training/guarded_update.py). It is printed in GB and in passes over the parameters (fixed /
parameter bytes). With --update_only the train step is not compiled: only the update that
follows the gradients (`guarded_update.guarded_update` with the trainer's optimizer and EMA
decay, gradients as an argument) is, which takes seconds instead of minutes for the 12-layer
model and moves no batch-dependent bytes.

--unguarded measures, for comparison only, the step without the non-finite guard: the update is
`guarded_update.apply_update` (the optax chain, then the EMA) and every step is kept, which is
what md4's train step does. The library has no such mode (a non-finite step is always skipped);
the difference between the two figures is what the guard costs on the parameter side.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from discrete_diffusion import config_fields, config_validation, training  # noqa: E402

FLAGS = flags.FLAGS
config_fields.define_config_flag("config", "Trainer config file.", lock_config=False)
flags.DEFINE_integer("random_tokens", 50257, "Vocabulary size K of the random ids.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype.")
flags.DEFINE_list("batch_sizes", ["1", "2"], "Two global batch sizes.")
flags.DEFINE_list("nonfinite_skip", [], "config.training.nonfinite_skip values (default: the "
                  "config's).")
flags.DEFINE_boolean("update_only", False, "Compile only the update after the gradients.")
flags.DEFINE_boolean("unguarded", False, "For comparison only: the step without the non-finite "
                     "guard (the optax chain and the EMA, every step kept, as md4).")
flags.mark_flags_as_required(["config"])

GB = 1e9


def unguarded_update(tx, decay, params, ema, opt_state, grads, ok, mode="select", adamw=None):
    """`guarded_update.guarded_update`'s signature without the guard: (p', e', s', ok), every
    step kept (md4's semantics; a benchmark comparison, not a mode of the library)."""
    del mode, adamw
    from discrete_diffusion.training import guarded_update

    return (*guarded_update.apply_update(tx, decay, params, ema, opt_state, grads), ok)


def _trainer(batch: int, skip: str):
    config = FLAGS.config.copy_and_resolve_references()
    with config.unlocked():
        if FLAGS.dtype:
            config.model.dtype = FLAGS.dtype
        config.process.num_classes = FLAGS.random_tokens
        config.training.batch_size = batch
        if skip:
            config.training.nonfinite_skip = skip
    config_validation.validate(config)
    return training.get_trainer(config, FLAGS.random_tokens, int(config.data.seq_len))


def step_bytes(batch: int, skip: str) -> tuple[float, float]:
    """(XLA's bytes accessed, compile seconds) of the train step at `batch` rows."""
    trainer = _trainer(batch, skip)
    seq_len = int(trainer.config.data.seq_len)
    tokens = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32, sharding=trainer.batch_sharding)
    t0 = time.time()
    compiled = trainer._train_step_checked.lower(trainer.abstract_state(), {"tokens": tokens}).compile()
    return float(compiled.cost_analysis()["bytes accessed"]), time.time() - t0


def update_bytes(skip: str) -> tuple[float, float]:
    """(XLA's bytes accessed, compile seconds) of the update alone (gradients as an argument)."""
    from discrete_diffusion.training import trainer as trainer_module

    trainer = _trainer(int(FLAGS.batch_sizes[0]), skip)
    state = trainer.abstract_state()

    def update(state, grads, loss):
        ok = jnp.isfinite(loss)
        return trainer_module.guarded_update(  # the trainer's update (or unguarded_update)
            trainer.tx, trainer.ema_decay, state.params, state.ema_params, state.opt_state,
            grads, ok, trainer.nonfinite_skip, trainer.adamw)

    t0 = time.time()
    compiled = jax.jit(update, donate_argnums=(0,)).lower(
        state, state.params, jax.ShapeDtypeStruct((), jnp.float32)).compile()
    return float(compiled.cost_analysis()["bytes accessed"]), time.time() - t0


def main(argv):
    del argv
    b1, b2 = (int(b) for b in FLAGS.batch_sizes)
    if b2 <= b1:
        raise app.UsageError(f"--batch_sizes must be two increasing sizes, got {FLAGS.batch_sizes}")
    config = FLAGS.config
    if FLAGS.unguarded:
        from discrete_diffusion.training import trainer as trainer_module

        trainer_module.guarded_update = unguarded_update
    for skip in FLAGS.nonfinite_skip or [""]:
        trainer = _trainer(b1, skip)
        pbytes = sum(x.size * x.dtype.itemsize
                     for x in jax.tree.leaves(trainer.abstract_state().params))
        mode = ("none (--unguarded)" if FLAGS.unguarded
                else skip or config.training.get("nonfinite_skip", "select"))
        dims = trainer.method.model
        head = (f"layers={dims.num_layers} d={dims.d_model} "
                f"L={config.data.seq_len} K={FLAGS.random_tokens} dtype={FLAGS.dtype or config.model.dtype} "
                f"nonfinite_skip={mode}; parameters {pbytes / GB:.3f} GB")
        if FLAGS.update_only:
            total, secs = update_bytes(skip)
            print(f"{head}\n  update only: {total / GB:.2f} GB = {total / pbytes:.2f} parameter "
                  f"passes (compiled in {secs:.0f} s)", flush=True)
            continue
        (y1, s1), (y2, s2) = step_bytes(b1, skip), step_bytes(b2, skip)
        per_row = (y2 - y1) / (b2 - b1)
        fixed = y1 - b1 * per_row
        print(f"{head}\n  bytes accessed: batch {b1} {y1 / GB:.2f} GB, batch {b2} {y2 / GB:.2f} GB "
              f"(compiled in {s1:.0f} + {s2:.0f} s)\n  per row {per_row / GB:.2f} GB; "
              f"batch-independent {fixed / GB:.2f} GB = {fixed / pbytes:.2f} parameter passes",
              flush=True)


if __name__ == "__main__":
    app.run(main)
