"""The `diffusion` method: a process x a parameterization x an objective, one network.

    params = {'network': transformer parameters}
    prepare:  t ~ batch_times (stratified over the global batch, [t_min, 1]),
              (x_t, extras) = proc.corrupt(key, x_0, t)      (extras: e.g. the noise ids u)
    loss:     (1 / (B L)) sum_{b, i} w_bi loss_i(x_0, x_t, t),
              loss_i = losses.loss_per_token(proc, parameterization, config.training.loss, ...)
    aux:      nelbo [B, L] = w * losses.nelbo_per_token(...) (the NELBO integrand whatever the
              objective), weights [B, L] = w (the padding mask)

The optimised scalar is the batch mean of per-sequence sums divided by L (the per-token loss, a
constant rescaling of the sequence loss). Keys: the step key is split in three, (t, x_t,
dropout), so runs reproduce the losses of the trainer before the methods seam.

Chunked logits (`config.model.logits_chunk` = c > 0; 0, the default, is the plain path): the
network returns its final hidden states h `[B, L, D]` and the output projection, the conversion
of the parameterization and the per-token losses run over chunks of c positions (`lax.map`), each
chunk under `jax.checkpoint`, so neither the `[B, L, K]` logits nor their gradient ever exist
whole: at most `[B, c, K]` at a time, recomputed in the backward pass. This is exact, since
loss_i depends only on position i's logits row and on (x_0^i, x_t^i, t, u^i); only the float
summation order of the projection's gradient changes. The plain path is unchanged bit for bit.

Class-conditional networks (config.model.num_labels > 0) read the batch's 'label'; with
`config.training.label_dropout` = p > 0 each training label is replaced by the null label
(id num_labels) with probability p, which trains the unconditional branch that classifier-free
guidance needs (Ho & Salimans 2022; the papers use p = 0.1).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import losses, processes, sampling
from discrete_diffusion import models as models_lib
from discrete_diffusion.methods import chunked, stratified
from discrete_diffusion.methods.base import (
    Batch,
    MethodBase,
    Params,
    compiled_sampler,
    token_weights,
    with_sampler,
)

Array = jax.Array


class Diffusion(MethodBase):
    """Discrete diffusion with the process, parameterization and objective of `config`."""

    name = "diffusion"
    samples_with_config_sampler = True

    def __init__(self, config: Any, num_classes: int):
        self.config = config
        self.proc = processes.from_config(config.process)
        self.parameterization = config.model.get("parameterization", "denoiser")
        self.loss_name = config.training.get("loss", "elbo")
        self.t_min = float(config.training.get("t_min", 1e-3))
        self.label_dropout = float(config.training.get("label_dropout", 0.0))
        self.logits_chunk = chunked.logits_chunk(config)
        self.model = models_lib.get_model(config, num_classes, self.proc.num_states)

    # -- parameters
    def init(self, key: Array, example_batch: Batch) -> Params:
        seq_len = example_batch["tokens"].shape[-1]
        inputs = models_lib.example_inputs(self.model, 1, seq_len)
        return {"network": self.model.init({"params": key}, **inputs)["params"]}

    # -- the network
    def network(self, params: Params, x_t: Array, t: Array, *, train: bool = False,
                key: Array | None = None, **inputs: Array) -> Array:
        """Logits `[B, L, K]` of the network at (x_t, t) with its keyword inputs."""
        rngs = {"dropout": key} if key is not None else {}
        return self.model.apply({"params": params["network"]}, x_t, t, train=train, rngs=rngs,
                                **inputs)

    def _label_inputs(self, batch: Batch, train: bool, key: Array) -> dict:
        if self.model.num_labels <= 0 or "label" not in batch:
            return {}
        label = batch["label"]
        if train and self.label_dropout > 0:
            drop = jax.random.uniform(key, label.shape) < self.label_dropout
            label = jnp.where(drop, self.model.num_labels, label)
        return {"label": label}

    def model_fn(self, params: Params):
        """model_fn(x_t, t, output_positions=None, **inputs) -> logits, for the samplers
        (`output_positions` int32 [N, P]: logits [N, P, K] at those positions only, which the
        first-hitting and masked ancestral samplers ask for; sampling/context.py)."""
        def fn(x_t: Array, t: Array, output_positions: Array | None = None, **inputs: Array):
            if output_positions is not None:
                inputs["output_positions"] = output_positions
            return self.network(params, x_t, t, **inputs)
        return fn

    # -- training
    def prepare(self, batch: Batch, key: Array) -> Batch:
        """Adds t `[B]` (stratified over the batch), x_t `[B, L]` and the process's extras."""
        k_t, k_noise, _ = jax.random.split(key, 3)
        t = stratified.batch_times(k_t, batch["tokens"].shape[0], self.t_min)
        x_t, extras = self.proc.corrupt(k_noise, batch["tokens"], t[:, None])
        return {**batch, "t": t, "x_t": x_t, "extras": extras}

    def _per_token(self, params: Params, batch: Batch, key: Array, train: bool):
        """(loss [B, L], nelbo [B, L]) of a prepared batch, unweighted."""
        x0, x_t, t, extras = batch["tokens"], batch["x_t"], batch["t"], batch["extras"]
        labels = self._label_inputs(batch, train, jax.random.fold_in(key, 1))
        if self.logits_chunk > 0:
            h = self.network(params, x_t, t, train=train, key=key if train else None,
                             return_hidden=True, **extras, **labels)  # [B, L, D]
            return self._chunked_losses(params, h, x0, x_t, t, extras)
        logits = self.network(params, x_t, t, train=train, key=key if train else None,
                              **extras, **labels)
        return self._token_losses(logits, x0, x_t, t, extras)

    def _token_losses(self, logits: Array, x0: Array, x_t: Array, t: Array,
                      extras: dict) -> tuple[Array, Array]:
        """(loss, nelbo) `[B, l]` of logits `[B, l, K]` at l positions (all L, or one chunk)."""
        args = (self.proc, self.parameterization)
        nelbo = losses.nelbo_per_token(*args, logits, x0, x_t, t[:, None], **extras)
        if self.loss_name == "elbo":
            return nelbo, nelbo
        loss = losses.loss_per_token(*args, self.loss_name, logits, x0, x_t, t[:, None], **extras)
        return loss, nelbo

    def _chunked_losses(self, params: Params, h: Array, x0: Array, x_t: Array, t: Array,
                        extras: dict) -> tuple[Array, Array]:
        """(loss, nelbo) `[B, L]` from the final hidden states h `[B, L, D]`, in chunks of
        `logits_chunk` positions: logits_c = h_c W + b -> conversion -> per-token losses, each
        chunk rematerialised (`jax.checkpoint`), so only `[B, c, K]` logits live at a time.
        L need not be a multiple of c: the last L mod c positions form one smaller chunk."""
        out_params = chunked.head_params(params)

        def chunk(shared, h_c, x0_c, x_t_c, extras_c):
            out_params, t = shared
            logits = self.model.project_hidden(out_params, h_c)  # [B, c, K] float32
            return self._token_losses(logits, x0_c, x_t_c, t, extras_c)

        return chunked.position_chunks(chunk, self.logits_chunk, (out_params, t), h, x0, x_t,
                                       extras)

    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool = True,
             step: Array | None = None) -> tuple[Array, dict]:
        del step
        if "x_t" not in batch:
            batch = self.prepare(batch, key)
        k_loss = jax.random.split(key, 3)[2]
        loss, nelbo = self._per_token(params, batch, k_loss, train)
        w = token_weights(batch)
        B, L = batch["tokens"].shape
        return jnp.sum(loss * w) / (B * L), {"nelbo": nelbo * w, "weights": w}

    # -- evaluation
    def nelbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int) -> Array:
        """[B, num_t] per-sequence NELBO (nats) at stratified times (`stratified.nelbo_samples`)."""

        def nelbo_fn(k: Array, x0: Array, t: Array) -> Array:
            k_noise, k_loss = jax.random.split(k)
            x_t, extras = self.proc.corrupt(k_noise, x0, t[:, None])
            noisy = {**batch, "tokens": x0, "t": t, "x_t": x_t, "extras": extras}
            return self._per_token(params, noisy, k_loss, train=False)[1]

        return stratified.nelbo_samples(key, nelbo_fn, batch["tokens"], num_t, self.t_min,
                                        weights=token_weights(batch))

    # -- sampling
    def generate(self, params: Params, key: Array, num_samples: int, seq_len: int,
                 sampler_config: Any = None, **prompt: Array) -> sampling.SampleResult:
        """Samples with `config.sampler` (or the `sampler_config` section given, for sweeps).

        Without a prompt the jitted sampler takes the parameters as an argument and is kept per
        (sampler section, N, L), so the training loop's periodic samples, `--mode=eval` and
        frontier sweeps compile each sampler once (`sampling.generate` jits a closure over the
        network and compiles on every call). With a prompt: `sampling.generate` (the prompt's
        values are checked before tracing)."""
        config = with_sampler(self.config, sampler_config)
        if prompt:
            return sampling.generate(key, self.model_fn(params), config, num_samples, seq_len,
                                     **prompt)
        fn = compiled_sampler(self, config, num_samples, seq_len,
                              lambda params, key: (self.model_fn(params), key))
        tokens, nfe = fn(params, key)
        return sampling.SampleResult(tokens=tokens, nfe=int(nfe))
