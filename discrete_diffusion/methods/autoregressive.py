"""The `autoregressive` method: the left-to-right baseline, trained and scored by its exact NLL.

    params = {'network': causal transformer parameters}
    inputs = (BOS, x_0^1, ..., x_0^{L-1}) with BOS = K (`models.ar_inputs`)
    loss   = (1 / (B L)) sum_{b, i} w_bi (-log p_theta(x_0^i | x_0^{<i}))

With `config.model.logits_chunk` = c > 0 the output projection and the per-token NLL run over
rematerialised chunks of c positions (`methods.chunked`), so no `[B, L, K]` logits exist whole.
The per-token NLL is exact, so `nelbo_samples` returns one sample per sequence ([B, 1]) whatever
num_t, and evaluation reports the model's exact likelihood in the diffusion models' units.
Samples come from `sampling.autoregressive.generate_autoregressive` with the sampler section's
temperature, top_k, top_p and categorical method (the diffusion sampler names do not apply).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import models as models_lib
from discrete_diffusion import sampling
from discrete_diffusion.log_prob import log_softmax_at
from discrete_diffusion.methods import chunked
from discrete_diffusion.methods.base import Batch, MethodBase, Params, token_weights, with_sampler
from discrete_diffusion.sampling.autoregressive import generate_autoregressive

Array = jax.Array


def token_nll(logits: Array, x0: Array) -> Array:
    """-log softmax(logits)[x0] `[B, l]` for logits `[B, l, K]` (float32)."""
    return -log_softmax_at(logits.astype(jnp.float32), x0)


class Autoregressive(MethodBase):
    """A causal transformer over x_0 shifted right by a BOS id K."""

    name = "autoregressive"

    def __init__(self, config: Any, num_classes: int):
        self.config = config
        self.bos_id = num_classes
        self.logits_chunk = chunked.logits_chunk(config)
        self.model = models_lib.get_model(config, num_classes, num_classes + 1)

    def init(self, key: Array, example_batch: Batch) -> Params:
        inputs = jnp.zeros((1, example_batch["tokens"].shape[-1]), jnp.int32)
        return {"network": self.model.init({"params": key}, inputs)["params"]}

    def next_token_logits(self, params: Params, inputs: Array, *, train: bool = False,
                          key: Array | None = None) -> Array:
        """logits[:, i] of p(x^i | inputs^{<=i}) `[B, L, K]` for inputs `[B, L]` (BOS first)."""
        rngs = {"dropout": key} if key is not None else {}
        return self.model.apply({"params": params["network"]}, inputs, train=train, rngs=rngs)

    def nll_per_token(self, params: Params, batch: Batch, key: Array | None = None,
                      train: bool = False) -> Array:
        """-log p(x_0^i | x_0^{<i}) `[B, L]` (unweighted)."""
        x0 = batch["tokens"]
        inputs = models_lib.ar_inputs(x0, self.bos_id)
        if self.logits_chunk > 0:
            rngs = {"dropout": key} if key is not None else {}
            h = self.model.apply({"params": params["network"]}, inputs, train=train, rngs=rngs,
                                 return_hidden=True)  # [B, L, D]

            def chunk(out_params: Params, h_c: Array, x0_c: Array) -> Array:
                return token_nll(self.model.project_hidden(out_params, h_c), x0_c)

            out_params = chunked.head_params(params)
            return chunked.position_chunks(chunk, self.logits_chunk, out_params, h, x0)
        return token_nll(self.next_token_logits(params, inputs, train=train, key=key), x0)

    def loss(self, params: Params, batch: Batch, key: Array, *, train: bool = True,
             step: Array | None = None) -> tuple[Array, dict]:
        del step
        k_drop = jax.random.split(key, 3)[2]  # the diffusion method's dropout key, for symmetry
        w = token_weights(batch)
        nll = self.nll_per_token(params, batch, k_drop if train else None, train) * w
        B, L = batch["tokens"].shape
        return jnp.sum(nll) / (B * L), {"nelbo": nll, "weights": w}

    def nelbo_samples(self, params: Params, batch: Batch, key: Array, num_t: int) -> Array:
        """[B, 1]: the exact per-sequence NLL (nats); `num_t` is irrelevant."""
        del key, num_t
        return jnp.sum(self.nll_per_token(params, batch) * token_weights(batch), -1)[:, None]

    def generate(self, params: Params, key: Array, num_samples: int, seq_len: int,
                 sampler_config: Any = None, **prompt: Array) -> sampling.SampleResult:
        """Left to right with the sampler section's temperature / top_k / top_p / categorical."""
        if prompt:
            raise ValueError("the autoregressive method does not take prompt_tokens/prompt_mask")
        s = sampling.sampler_settings(with_sampler(self.config, sampler_config))

        def logits_fn(inputs: Array) -> Array:
            return self.next_token_logits(params, inputs)

        tokens = jax.jit(lambda k: generate_autoregressive(
            k, logits_fn, num_samples, seq_len, self.bos_id, temperature=float(s["temperature"]),
            top_k=int(s["top_k"]), top_p=float(s["top_p"]), method=s["categorical"]))(key)
        return sampling.SampleResult(tokens=tokens, nfe=seq_len)
