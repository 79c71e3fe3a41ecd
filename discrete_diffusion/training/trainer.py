"""The trainer: a method's parameters, optimizer and steps, jitted and sharded over a mesh.

It knows nothing of any method but the protocol of `methods.base`: it builds the method of
`config.method.name`, initialises its parameter pytree, and jits

    train step:  key = fold_in(rng, step); batch = method.prepare(batch, key);
                 (loss, aux), grads = value_and_grad(method.loss)(params, batch, key)
                 (over `grad_accum_steps` micro-batches of the prepared batch, gradients averaged);
                 optimizer update (method.optimizer), EMA of the parameters (ema_decay);
    eval step:   method.eval_bounds(params, batch, key, eval_num_t) -> {name: [B, num_t]}
                 (default {'nelbo': method.nelbo_samples(...)}; further named bounds, e.g.
                 VADD's 'delbo', are summarised beside it as eval_<name>_*);

over the ('data', 'fsdp', 'tensor') mesh of `config.mesh` (discrete_diffusion/sharding.py): the
batch is sharded over data x fsdp, the parameters, their EMA and the optimizer moments by
`method.partition_rules` then `sharding.RULES`. The noise of a step is drawn for the global batch
inside the jitted step, so a seed gives the same run whatever the mesh or the number of processes.

Logged per step (nats/token): loss (the scalar the method minimises), nelbo (sum of aux['nelbo']
over sum of aux['weights']: per real token), grad_norm, lr, and the method's aux['metrics'].

A step whose loss or gradient norm is not finite, or whose update would make a parameter or an
optimizer moment non-finite, changes nothing but the step counter, so a finite state stays finite
(the EMA of finite parameters saturates at the dtype's largest value instead of overflowing:
training/ema.py). Inside the jitted step (no host callback), by `config.training.nonfinite_skip`:

    'cond'            finite = all leaves of update(state, grads) finite, then
                      lax.cond(finite, update, keep old): the new state is written over the
                      donated old one. The update's arithmetic runs twice; for the flag XLA (CPU)
                      recomputes the new leaves inside the reductions and keeps only the Adam
                      direction and the clipped gradients (12-layer model: 0.83 GB). XLA:GPU
                      copies a conditional's predicate to the host (one small wait per step).
    'select' (default) where(finite, new, old) per leaf, in as few passes over the parameters
                      as XLA allows (training/guarded_update.py; with make_optimizer's chain
                      unwrapped, fused_adamw.py: the flag's reduction recomputes the new leaves,
                      then each new leaf is written once, nothing held as scratch; 12-layer
                      d = 768 model, V = 50257, float32: 14.7 GB per step independent of the batch,
                      26.6 GB with the old jnp.where of a materialised new state).

Both give the same update up to float32 rounding (tests/test_nonfinite_skip.py) and skip the
same steps. 'select' is the default ('cond' moves more bytes and its train
step compiles 20-30% longer). `train_step_checked` also returns the step's health {'finite',
'loss', 'grad_norm'} for the loop to count such steps (`faults.NonFiniteMonitor`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from discrete_diffusion import methods, progress, sharding
from discrete_diffusion.metrics import LN2, perplexity, train_metrics_class
from discrete_diffusion.training.fused_adamw import AdamWHyper
from discrete_diffusion.training.global_norm import global_norm
from discrete_diffusion.training.guarded_update import guarded_update
from discrete_diffusion.training.optimizer import learning_rate_schedule, make_optimizer
from discrete_diffusion.training.state import TrainState

# How a non-finite step keeps the old state (config.training.nonfinite_skip; see the module doc).
NONFINITE_SKIP = ("cond", "select")
EVAL_REPORT_EVERY_S = 30.0  # a held-out evaluation running longer prints a progress line this often


def example_batch(seq_len: int, num_labels: int = 0) -> dict[str, jax.Array]:
    """A one-row batch of zeros with the data's shapes (what `method.init` sees)."""
    batch = {"tokens": jnp.zeros((1, seq_len), jnp.int32)}
    if num_labels:
        batch["label"] = jnp.zeros((1,), jnp.int32)
    return batch


def _summed(aux: dict) -> dict:
    """Per-micro-batch sums of aux: nelbo, weights (token count) and the method's metrics."""
    return {"nelbo": jnp.sum(aux["nelbo"]), "count": jnp.sum(aux["weights"]),
            "metrics": dict(aux.get("metrics", {}))}


class Trainer:
    """The method of `config`, its optimizer and the jitted init / train / eval steps on a mesh."""

    def __init__(self, config: Any, num_classes: int, seq_len: int, devices: list | None = None,
                 num_labels: int = 0):
        self.config = config
        tc = config.training
        self.method = methods.get(config, num_classes)
        base_tx = make_optimizer(tc)
        self.tx = self.method.optimizer(tc, base_tx)
        # make_optimizer's chain as it is: the guarded step in fewer passes (fused_adamw.py)
        self.adamw = AdamWHyper.from_config(tc) if self.tx is base_tx else None
        self.lr_fn = learning_rate_schedule(tc)
        self.accum = int(tc.get("grad_accum_steps", 1))
        self.ema_decay = float(tc.get("ema_decay", 0.0))
        self.nonfinite_skip = str(tc.get("nonfinite_skip", "select"))
        if self.nonfinite_skip not in NONFINITE_SKIP:
            raise ValueError(f"config.training.nonfinite_skip={self.nonfinite_skip!r} is not one "
                             f"of {list(NONFINITE_SKIP)}")
        self.eval_num_t = int(tc.get("eval_num_t", 8))
        self._example = example_batch(seq_len, num_labels)
        # ('data', 'fsdp', 'tensor') mesh of config.mesh; the batch is split over data x fsdp, the
        # parameters (and their EMA and optimizer moments) by the method's rules then RULES.
        self.mesh = sharding.make_mesh(config, devices)
        self.rules = tuple(self.method.partition_rules) + tuple(sharding.RULES)
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self._abstract = jax.eval_shape(self._init_impl, jax.random.PRNGKey(0))
        self.state_shardings = sharding.state_shardings(self.mesh, self._abstract, self.rules)
        self.param_shardings = self.state_shardings.params
        self.metrics_class = train_metrics_class(self._metric_names())
        # (state, metrics, health); `_train_step` is the same compiled step without the health.
        self._train_step_checked = jax.jit(
            self._train_step_impl, in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, self.replicated, self.replicated),
            donate_argnums=(0,),
        )
        self._train_step = lambda state, batch: self._train_step_checked(state, batch)[:2]
        self._init = jax.jit(self._init_impl, out_shardings=self.state_shardings)
        self._eval_step = jax.jit(
            self._eval_step_impl,
            in_shardings=(self.param_shardings, self.batch_sharding, self.replicated),
            out_shardings=self.replicated,
        )

    # -- init
    def init_state(self, seed: int) -> TrainState:
        """The initial state, created directly in its shardings (never whole on one device)."""
        return self._init(jax.random.PRNGKey(seed))

    def abstract_state(self) -> TrainState:
        """ShapeDtypeStructs of the state with this mesh's shardings (a checkpoint restore target)."""
        return sharding.abstract_with_shardings(self._abstract, self.state_shardings)

    def _init_impl(self, key: jax.Array) -> TrainState:
        k_init, k_state = jax.random.split(key)
        params = self.method.init(k_init, self._example)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params,
            ema_params=jax.tree.map(jnp.copy, params), opt_state=self.tx.init(params), rng=k_state,
        )

    def _metric_names(self) -> tuple[str, ...]:
        """Names of aux['metrics'] of the method's loss (found by tracing it once, abstractly)."""
        params = self._abstract.params
        batch = {k: jnp.zeros((2,) + v.shape[1:], v.dtype) for k, v in self._example.items()}
        key = jax.random.PRNGKey(0)

        def probe(params, batch):
            prepared = self.method.prepare(batch, key)
            return self.method.loss(params, prepared, key, train=True, step=jnp.zeros((), jnp.int32))

        _, aux = jax.eval_shape(probe, params, batch)
        return tuple(aux.get("metrics", {}))

    # -- the train step
    def _grads(self, params: Any, batch: dict, key: jax.Array, step: jax.Array):
        """(mean loss, summed aux, mean gradients) over `accum` micro-batches of `batch`."""

        def micro(p, mb, k):
            loss, aux = self.method.loss(p, mb, k, train=True, step=step)
            return loss, _summed(aux)

        grad_fn = jax.value_and_grad(micro, has_aux=True)
        if self.accum == 1:
            (loss, aux), grads = grad_fn(params, batch, key)
            return loss, aux, grads

        def split(x):
            return x.reshape((self.accum, x.shape[0] // self.accum) + x.shape[1:])

        keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(jnp.arange(self.accum))

        def body(carry, xs):
            mb, k = xs
            (loss, aux), g = grad_fn(params, mb, k)
            return jax.tree.map(jnp.add, carry, (loss, aux, g)), None

        (_, aux0), g0 = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], jax.tree.map(
            split, batch)), key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (jnp.zeros(()), aux0, g0))
        (loss, aux, grads), _ = jax.lax.scan(body, zeros, (jax.tree.map(split, batch), keys))
        mean = lambda x: x / self.accum  # noqa: E731
        aux = {**aux, "metrics": jax.tree.map(mean, aux["metrics"])}
        return mean(loss), aux, jax.tree.map(mean, grads)

    def _train_step_impl(self, state: TrainState, batch: dict):
        key = jax.random.fold_in(state.rng, state.step)
        batch = self.method.prepare(batch, key)
        loss, aux, grads = self._grads(state.params, batch, key, state.step)
        grad_norm = global_norm(grads)
        # A non-finite loss or gradient (or an update that overflows a parameter or an optimizer
        # moment) is skipped: the old parameters, EMA and optimizer state are kept and
        # only the step counter moves on, so a finite state stays finite.
        # (training/guarded_update.py: the update, the EMA and the flag in few parameter passes)
        params, ema, opt_state, finite = guarded_update(
            self.tx, self.ema_decay, state.params, state.ema_params, state.opt_state, grads,
            jnp.isfinite(loss) & jnp.isfinite(grad_norm), self.nonfinite_skip, self.adamw)
        new_state = state.replace(
            step=state.step + 1,
            params=params, ema_params=ema, opt_state=opt_state,
        )
        metrics = self.metrics_class.single_from_model_output(
            loss=loss, nelbo=aux["nelbo"] / jnp.maximum(aux["count"], 1.0),
            grad_norm=grad_norm, lr=self.lr_fn(state.step), **aux["metrics"],
        )
        health = {"finite": finite, "loss": loss.astype(jnp.float32),
                  "grad_norm": grad_norm.astype(jnp.float32)}
        return new_state, metrics, health

    # -- evaluation
    def _eval_step_impl(self, params, batch, key):
        """Per-sequence NELBO samples `[B, num_t]` (nats) and tokens per sequence `[B]`; rows
        with `valid=False` (the padding of a last partial batch) count zero of both."""
        valid = batch.get("valid", jnp.ones(batch["tokens"].shape[:1], bool)).astype(jnp.float32)
        bounds = methods.base.eval_bounds(self.method, params, batch, key, self.eval_num_t)
        tokens = jnp.sum(methods.base.token_weights(batch), axis=-1)
        return {"samples": {k: v * valid[:, None] for k, v in bounds.items()},
                "tokens": tokens * valid, "valid": valid}

    # -- public
    def shard_batch(self, batch: dict) -> dict:
        """Global arrays, sharded over ('data', 'fsdp'), from this process's rows of a batch."""
        div = sharding.batch_divisor(self.mesh)
        out = {}
        for k, v in batch.items():
            v = np.asarray(v)
            rows = v.shape[0] * jax.process_count()
            if rows % div:
                raise ValueError(
                    f"a global batch of {rows} rows (config.training.batch_size or "
                    f"config.data.eval_batch_size) is not divisible by config.mesh data x fsdp = {div}"
                )
            out[k] = jax.make_array_from_process_local_data(self.batch_sharding, v)
        return out

    def train_step(self, state: TrainState, batch: dict):
        """(new state, metrics) of one step on this process's rows of `batch` (the state is
        donated). A non-finite step leaves the parameters as they were (see the module doc)."""
        return self._train_step(state, self.shard_batch(batch))

    def train_step_checked(self, state: TrainState, batch: dict):
        """`train_step` plus the step's health: {'finite': bool scalar (False: the update was
        skipped), 'loss', 'grad_norm'}, device arrays (fetch them a step later to keep the
        device busy)."""
        return self._train_step_checked(state, self.shard_batch(batch))

    def evaluate(self, params, batches: Iterable[dict], seed: int = 0) -> dict[str, float]:
        """Held-out NELBO over `batches` with `eval_num_t` stratified times per sequence (the exact
        NLL where the method has one): nats/token (eval_nelbo), bits/token (eval_bpt),
        perplexity, and standard errors (eval_se_bpt: data + Monte Carlo; eval_mc_se_bpt: Monte
        Carlo alone; see `methods.stratified.summarize_nelbo`). A method's further named bounds
        (`eval_bounds`, e.g. VADD's 'delbo') give eval_<name> (nats/token), eval_<name>_bpt,
        eval_<name>_se_bpt and eval_<name>_mc_se_bpt from the same sequences."""
        samples: dict[str, list] = {}
        tokens = []
        total = int(self.config.training.get("eval_batches", 0) or 0)  # at most, for the ETA
        start = last = time.perf_counter()
        for i, batch in enumerate(batches):
            now = time.perf_counter()
            if 0 < i < total and now - last >= EVAL_REPORT_EVERY_S and jax.process_index() == 0:
                last = now  # long evaluations say how far they are
                print("[eval] " + progress.line("likelihood", i, total, now - start,
                                                unit="batch", plural="batches"), flush=True)
            key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
            out = jax.device_get(self._eval_step(params, self.shard_batch(batch), key))
            keep = np.asarray(out["valid"]) > 0
            for name, s in out["samples"].items():
                samples.setdefault(name, []).append(np.asarray(s)[keep])
            tokens.append(np.asarray(out["tokens"])[keep])
        if not tokens:
            raise ValueError("evaluation got no batches (the validation split is empty or "
                             "config.training.eval_batches is 0)")
        tokens_all = np.concatenate(tokens)
        summary = methods.stratified.summarize_nelbo(np.concatenate(samples["nelbo"]), tokens_all)
        nelbo = summary["nelbo"]
        out = {"eval_nelbo": nelbo, "eval_bpt": nelbo / LN2, "eval_ppl": perplexity(nelbo),
               "eval_se_bpt": summary["se_bpt"], "eval_mc_se_bpt": summary["mc_se"] / LN2,
               "eval_tokens": summary["num_tokens"], "eval_sequences": summary["num_sequences"],
               "eval_num_t": summary["num_t"]}
        for name, s in samples.items():
            if name != "nelbo":
                extra = methods.stratified.summarize_nelbo(np.concatenate(s), tokens_all)
                out.update({f"eval_{name}": extra["nelbo"], f"eval_{name}_bpt": extra["bpt"],
                            f"eval_{name}_se_bpt": extra["se_bpt"],
                            f"eval_{name}_mc_se_bpt": extra["mc_se"] / LN2})
        return out

    def generate(self, params, key, num_samples: int, seq_len: int, sampler: Any = None,
                 **prompt: jax.Array):
        """The method's samples with `config.sampler`, or with the `sampler` section given."""
        return self.method.generate(params, key, num_samples, seq_len, sampler, **prompt)


_TRAINERS: dict = {}


def get_trainer(config: Any, num_classes: int, seq_len: int, devices: list | None = None,
                num_labels: int = 0) -> Trainer:
    """A cached `Trainer` (so its jitted functions compile once per config and devices).

    Fields that only steer the loop (num_steps, logging/eval/sample/checkpoint periods) are not
    part of the key unless the learning-rate schedule reads num_steps ('cosine')."""
    loop_only = ("log_every", "eval_every", "eval_batches", "sample_every", "num_samples",
                 "checkpoint_every", "max_checkpoints", "max_train_minutes", "max_nonfinite_steps",
                 "start_fresh_if_unreadable")
    cfg = config.to_dict()
    tc = dict(cfg["training"])
    for k in loop_only:
        tc.pop(k, None)
    if tc.get("lr_schedule", "constant") != "cosine":
        tc.pop("num_steps", None)
    cfg["training"] = tc
    devs = tuple(d.id for d in (devices if devices is not None else jax.devices()))
    key = (json.dumps(cfg, sort_keys=True, default=str), num_classes, seq_len, num_labels, devs)
    if key not in _TRAINERS:
        if len(_TRAINERS) > 8:
            _TRAINERS.clear()
        _TRAINERS[key] = Trainer(config, num_classes, seq_len, devices, num_labels)
    return _TRAINERS[key]
