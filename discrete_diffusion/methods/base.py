"""The seam between the trainer and a method: the `Method` protocol and `MethodBase` defaults.

A method owns everything its name means: its parameters (a pytree that may hold the network,
schedule parameters, an encoder, a frozen teacher), how it corrupts data, its objective, its
held-out likelihood estimate and its sampler. The trainer (discrete_diffusion/training/) jits,
shards, accumulates, averages (EMA), checkpoints and loops over *any* object with these members,
and reads nothing else about it:

    method = dd.methods.get(config, num_classes)           # config.method.name
    params = method.init(key, example_batch)                # pytree, e.g. {'network': ...}
    batch = method.prepare(batch, key)                      # randomness drawn per global batch
    loss, aux = method.loss(params, batch, key, train=True, step=step)
        # loss: the scalar to minimise; aux['nelbo'] [B, L] per-token nats, aux['weights'] [B, L],
        # aux['metrics']: {name: scalar} logged beside loss and nelbo (optional)
    method.nelbo_samples(params, batch, key, num_t)         # [B, num_t] per-sequence nats
    method.generate(params, key, N, L, sampler_config, prompt_tokens=..., prompt_mask=...)

Batches are dicts of arrays: 'tokens' int32 [B, L], optional 'mask' (bool [B, L], padding),
'label' (int32 [B]) and 'valid' (bool [B], evaluation padding rows).

`prepare` exists for gradient accumulation: the trainer calls it once on the whole global batch
and then `loss` on micro-batches of its output, so a step with accumulation draws the same
noise as the step without (a method whose loss draws its own noise keeps the default identity).

Optional members with defaults in `MethodBase`: `partition_rules` (regex -> PartitionSpec rules
for parameters outside the network, tried before `sharding.RULES`), `optimizer(training_config,
default)` (e.g. `training.optimizer.by_top_level_key` for a separate optimizer of schedule
parameters, or `optax.set_to_zero()` for a frozen teacher), `samples_with_config_sampler`
(whether `generate` honours `config.sampler.name`: the frontier sweeps diffusion samplers only
where it does), `sampler_fields` (config.sampler fields the method itself reads and removes
before calling a sampler, which config validation therefore accepts), `eval_bounds(params, batch,
key, num_t) -> {name: [B, num_t]}` (held-out bounds reported together: 'nelbo' is eval_nelbo,
each further name eval_<name>_*; without it the trainer uses {'nelbo': nelbo_samples(...)}).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import optax

Array = jax.Array
Params = Any
Batch = dict[str, Any]


@runtime_checkable
class Method(Protocol):
    """What the trainer calls; see the module docstring for the meaning of each member."""

    name: str
    partition_rules: tuple
    samples_with_config_sampler: bool

    def init(self, key: Array, example_batch: Batch) -> Params: ...

    def prepare(self, batch: Batch, key: Array) -> Batch: ...

    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool,
             step: Array) -> tuple[Array, dict]: ...

    def nelbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int) -> Array: ...

    def generate(self, params: Params, key: Array, num_samples: int, seq_len: int,
                 sampler_config: Any = None, **prompt: Array) -> Any: ...

    def optimizer(self, training_config: Any,
                  default: optax.GradientTransformation) -> optax.GradientTransformation: ...


class MethodBase:
    """Defaults for the optional members; subclass it and define the four required ones."""

    name = "method"
    partition_rules: tuple = ()
    samples_with_config_sampler = False
    sampler_fields: tuple = ()  # config.sampler fields the method reads itself (vadd: 'latent')
    # The fields it reads per config section beyond the shared ones (config_fields.section_fields):
    # config.method is closed to these, and 'model' / 'training' / ... entries extend those sections.
    config_fields: dict = {"method": ("name",)}
    # Their types and defaults, {section: {field: (type, default)}}: the one declaration of each.
    # `config_fields.define_config_flag` adds those a config file leaves out (at the default, a
    # typed placeholder where it is None), so each is settable as --config.SECTION.FIELD=VALUE.
    # A subclass that sets only `config_declared` gets `config_fields` ('name' included) and
    # `sampler_fields` (its 'sampler' entries) from it.
    config_declared: dict = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_declared" not in cls.__dict__:
            return
        if "config_fields" not in cls.__dict__:
            cls.config_fields = {
                section: tuple(dict.fromkeys((["name"] if section == "method" else []) + list(fields)))
                for section, fields in cls.config_declared.items()}
            cls.config_fields.setdefault("method", ("name",))
        if "sampler_fields" not in cls.__dict__ and "sampler" in cls.config_declared:
            cls.sampler_fields = tuple(cls.config_declared["sampler"])

    def prepare(self, batch: Batch, key: Array) -> Batch:  # noqa: ARG002
        """No per-global-batch randomness: the batch unchanged."""
        return batch

    def optimizer(self, training_config: Any,  # noqa: ARG002
                  default: optax.GradientTransformation) -> optax.GradientTransformation:
        """The config's optimizer (`training.optimizer.make_optimizer`) for every parameter."""
        return default


def eval_bounds(method: Any, params: Params, batch: Batch, key: Array,
                num_t: int) -> dict[str, Array]:
    """The held-out bounds `{name: [B, num_t]}` (nats per sequence) that the trainer evaluates:
    the method's own `eval_bounds` if it has one (it must hold 'nelbo', the number reported as
    eval_nelbo; further names are reported beside it), else {'nelbo': method.nelbo_samples(...)}."""
    fn = getattr(method, "eval_bounds", None)
    if fn is None:
        return {"nelbo": method.nelbo_samples(params, batch, key, num_t)}
    bounds = dict(fn(params, batch, key, num_t))
    if "nelbo" not in bounds:
        raise ValueError(f"method {method.name!r}: eval_bounds must return a 'nelbo' entry, got "
                         f"{sorted(bounds)}")
    return bounds


def token_weights(batch: Batch) -> Array:
    """Per-token weights `[B, L]`: the padding mask as float, or ones."""
    tokens = batch["tokens"]
    if "mask" in batch:
        return batch["mask"].astype(jax.numpy.float32)
    return jax.numpy.ones(tokens.shape, jax.numpy.float32)


def compiled_sampler(owner: Any, config: Any, num_samples: int, seq_len: int,
                     network: Callable[[Params, Array], tuple[Callable, Array]],
                     variant: str = "",
                     schedule: Callable[[Params], Any] | None = None) -> Callable:
    """A jitted `(params, key) -> (tokens [N, L], nfe)` for the sampler of `config`, kept on
    `owner` per (sampler section, N, L), so repeated sampling (the training loop, `--mode=eval`,
    frontier sweeps) compiles once: the parameters are an argument, not a constant of a closure.

    `network(params, key) -> (model_fn, sampler_key)` builds the model function inside the trace
    (a method may draw its own randomness from `key`, e.g. VADD's latents) and says which key the
    sampler gets; `variant` names what else `network` depends on (part of the cache key, e.g.
    VADD's latent mode). `schedule(params)`, if given, builds a schedule that replaces
    config.process's inside the trace (`sampling.make_context(..., schedule=...)`: a learned
    per-position schedule, methods/learned_order.py). Errors of the config are raised before
    tracing.
    """
    from discrete_diffusion import sampling

    cache = owner.__dict__.setdefault("_samplers", {})
    section = json.dumps(config.sampler.to_dict(), sort_keys=True, default=str)
    recording = sampling.trace.active() is not None  # compiled with the trace callback in it
    cache_key = (section, variant, num_samples, seq_len, recording)
    fn = cache.get(cache_key)
    if fn is None:
        sampling.make_context(None, config, num_samples, seq_len)  # config errors now

        def run(params: Params, key: Array) -> tuple[Array, Array]:
            model_fn, sampler_key = network(params, key)
            sched = schedule(params) if schedule is not None else None
            ctx = sampling.make_context(model_fn, config, num_samples, seq_len, schedule=sched)
            return sampling.SAMPLERS[ctx.settings["name"]].run(sampler_key, ctx)

        fn = cache[cache_key] = jax.jit(run)
    return fn


def with_sampler(config: Any, sampler_config: Any) -> Any:
    """`config` with its `sampler` section replaced by `sampler_config` (None: unchanged)."""
    if sampler_config is None:
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.sampler = sampler_config
    return config
