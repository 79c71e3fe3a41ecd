"""Released PyTorch checkpoints of MDLM, Duo, UDLM and SEDD as this library's models.

    from discrete_diffusion import interop
    loaded = interop.load(path, kind, *, num_heads=None, time_conditioning=None, **overrides)
    loaded.config     # a complete ConfigDict: main.py, dd.sample and the methods accept it
    loaded.params     # our network's parameter tree
    loaded.model_fn(x_t, t)   # x_t int [B, L], process time t [B] -> logits [B, L, K] (mask row dropped)

Kinds (the reference code each follows; all use the log-linear schedule alpha_t = 1 - (1 - eps) t,
eps = 1e-3, and embed sigma = -log alpha_t: `config.model.time_input = 'sigma'`):

    mdlm  masked process, denoiser (SUBS) logits; untimed by default (MDLM's OWT model): the
          reference's constant conditioning is folded into the adaLN biases (convert.py eq. 1).
          The mask id must be the last input id (K; GPT-2 vocabularies: MDLM adds it at 50257).
    duo   uniform process; Duo's x_theta read by the plug-in bridge is the leave-one-out posterior
          (parameterization 'loo', as configs/owt_duo.py); timed. Covers the distilled models.
    udlm  uniform process, 'loo' (UDLM's x_theta enters the same plug-in bridge); timed.
    sedd  parameterization 'score', timed. graph 'absorb' (SEDD's released models): masked process
          and its `scale_by_sigma` output shift (config.model.scale_by_sigma; models/time_input.py
          eq. 1), the mask column dropped; graph 'uniform': uniform process, no shift. The graph
          is `graph=` or config.json's graph.type (default 'absorb'). SEDD's geometric noise
          schedule is not supported (its released models use log-linear).

Sizes come from the parameter shapes; num_heads from the argument, else config.json beside the
weights (`n_heads`, or `model.n_heads` for SEDD), else the rotary buffer `rotary_emb.inv_freq`
when the state_dict holds it. The vocabulary picks config.data: K = 50257/50258 (GPT-2) ->
'openwebtext' (L = 1024), K = 30522 (bert-base-uncased) -> 'lm1b' (L = 128), whose prepared
datasets carry their tokenizer (samples decode when its files load, else print as ids); any
other K -> 'synthetic' with synthetic_vocab_size = K (ids). `overrides` replace config fields:
`data={'name': 'synthetic'}` (a section's fields) or `**{'data.seq_len': 16}` (dotted paths).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from discrete_diffusion import models as models_lib
from discrete_diffusion.interop.convert import convert, heads_from_rotary, infer_sizes
from discrete_diffusion.interop.state_dict import config_value, read_config_json, read_state_dict

KINDS = ("mdlm", "duo", "udlm", "sedd")
SEDD_GRAPHS = ("absorb", "uniform")
GPT2_SIZES = (50257, 50258)  # GPT-2's vocabulary; + Duo's added [PAD] (len(tokenizer))
BERT_SIZE = 30522  # bert-base-uncased


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A converted checkpoint: `config` (complete), `params` (the network's tree, jax arrays),
    `model_fn(x_t, t)` -> float32 logits [B, L, K], and `info` (file, prefix, ema, kind, ...)."""

    config: ml_collections.ConfigDict
    params: Any
    model_fn: Callable[..., jax.Array]
    info: dict


def _kind_fields(kind: str, graph: str) -> dict[str, Any]:
    """process, parameterization, default time conditioning and output shift of a kind."""
    if kind == "mdlm":
        return dict(process="masked", parameterization="denoiser", timed=False, shift=False)
    if kind in ("duo", "udlm"):
        return dict(process="uniform", parameterization="loo", timed=True, shift=False)
    if graph == "absorb":
        return dict(process="masked", parameterization="score", timed=True, shift=True)
    return dict(process="uniform", parameterization="score", timed=True, shift=False)


def base_config() -> ml_collections.ConfigDict:
    """configs/base.py's defaults (configs/ sits beside the package, as main.py expects)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from configs import base
    except ImportError as err:
        raise ImportError(f"interop.load builds its config from configs/base.py, not found under "
                          f"{root} (use a source checkout: pip install -e .)") from err
    return base.get_config()


def _data_fields(num_classes: int, seq_len: int | None) -> dict[str, Any]:
    if num_classes in GPT2_SIZES:
        return dict(name="openwebtext", seq_len=seq_len or 1024)
    if num_classes == BERT_SIZE:
        return dict(name="lm1b", seq_len=seq_len or 128)
    return dict(name="synthetic", synthetic_vocab_size=num_classes, seq_len=seq_len or 64)


def _apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if "." in key:
            *path, field = key.split(".")
            section = config
            for name in path:
                section = section[name]
            section[field] = value
        elif isinstance(value, dict):
            for field, v in value.items():
                config[key][field] = v
        else:
            raise ValueError(f"override {key}={value!r}: pass a section's fields as a dict "
                             f"({key}={{'field': value}}) or a dotted path ('{key}.field')")


def build_config(fields: dict[str, Any], sizes: dict[str, int], *, num_heads: int,
                 time_conditioning: bool, seq_len: int | None,
                 overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """The complete config of a converted network (method 'diffusion', log-linear schedule);
    `fields` are `_kind_fields`' (process, parameterization, shift)."""
    num_classes = sizes["input_vocab_size"] - (fields["process"] == "masked")
    config = base_config()
    with config.unlocked():
        config.method.name = "diffusion"
        config.process.name = fields["process"]
        config.process.schedule = "loglinear"
        config.process.schedule_eps = 1e-3
        config.process.num_classes = num_classes
        m = config.model
        m.size = "custom"
        m.num_layers, m.d_model = sizes["num_layers"], sizes["d_model"]
        m.num_heads, m.cond_dim = num_heads, sizes["cond_dim"]
        m.parameterization = fields["parameterization"]
        m.time_conditioning = bool(time_conditioning)
        m.time_input = "sigma"
        m.scale_by_sigma = bool(fields["shift"])
        m.dropout = 0.1  # the references' training value (inactive at evaluation and sampling)
        if fields["parameterization"] == "score":
            config.training.loss = "score_entropy"
        for field, value in _data_fields(num_classes, seq_len).items():
            config.data[field] = value
        _apply_overrides(config, overrides)
    return config


def _num_heads(num_heads: int | None, config_json: dict, weights: dict) -> int:
    if num_heads is None:
        num_heads = config_value(config_json, "n_heads")
    from_rotary = heads_from_rotary(weights)
    if num_heads is None:
        num_heads = from_rotary
    if num_heads is None:
        raise ValueError("num_heads cannot be read from the parameter shapes: pass num_heads= or "
                         "put the model's config.json (with n_heads) beside the weights")
    if from_rotary is not None and int(num_heads) != from_rotary:
        raise ValueError(f"num_heads={num_heads} contradicts the state_dict's rotary buffer "
                         f"rotary_emb.inv_freq (num_heads={from_rotary})")
    return int(num_heads)


def _mask_row(kind_fields: dict, sizes: dict) -> int | None:
    """The output row to drop: the mask id V - 1 when a masked model outputs V = K + 1 logits."""
    vocab, width = sizes["input_vocab_size"], sizes["output_width"]
    masked = kind_fields["process"] == "masked"
    expected = (vocab, vocab - 1) if masked else (vocab,)
    if width not in expected:
        raise ValueError(f"output_layer.linear has {width} rows but vocab_embed has {vocab}: "
                         f"expected {' or '.join(map(str, expected))} for this kind")
    return vocab - 1 if masked and width == vocab else None


def load(path: str | os.PathLike, kind: str, *, num_heads: int | None = None,
         time_conditioning: bool | None = None, ema: bool | None = None, graph: str | None = None,
         **overrides: Any) -> Loaded:
    """Loads a reference checkpoint (module doc) as a config, our parameters and a model_fn.

    path: .safetensors (no torch), a torch pickle (.ckpt/.pt/.pth/.bin; needs the `torch` extra)
    or a folder holding model.safetensors / pytorch_model.bin. kind: one of KINDS.
    num_heads / time_conditioning: None reads them from config.json beside the weights, else the
    kind's default (mdlm untimed; duo, udlm, sedd timed). ema: None takes EMA weights when the
    checkpoint holds them, True requires them, False takes the raw weights. graph: SEDD's
    'absorb' | 'uniform'. overrides: config fields (module doc).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {list(KINDS)}")
    config_json = read_config_json(path)
    if kind == "sedd":
        graph = graph or (config_json.get("graph") or {}).get("type", "absorb")
        if graph not in SEDD_GRAPHS:
            raise ValueError(f"graph={graph!r} is not one of {list(SEDD_GRAPHS)} (SEDD's graphs)")
    elif graph is not None:
        raise ValueError(f"graph= is SEDD's option (kind='sedd'), not kind={kind!r}'s")
    weights, info = read_state_dict(path, ema=ema)
    sizes = infer_sizes(weights)
    if sizes["mlp_ratio"] != 4:
        raise ValueError(f"MLP width {sizes['mlp_ratio']} x d_model: only 4 (the references') is "
                         "supported")
    heads = _num_heads(num_heads, config_json, weights)
    fields = _kind_fields(kind, graph)
    if time_conditioning is None:
        time_conditioning = config_value(config_json, "time_conditioning")
    timed = fields["timed"] if time_conditioning is None else bool(time_conditioning)
    if kind == "sedd" and not timed:
        raise ValueError("SEDD's networks are always time-conditioned: time_conditioning=False is "
                         "not supported for kind='sedd'")
    if kind == "sedd" and config_value(config_json, "scale_by_sigma") is False:
        fields["shift"] = False
    mask_id = _mask_row(fields, sizes)
    params = jax.tree.map(jnp.asarray, convert(weights, num_heads=heads, time_conditioning=timed,
                                                mask_id=mask_id))
    seq_len = config_value(config_json, "model_length") or config_value(config_json, "length")
    config = build_config(fields, sizes, num_heads=heads, time_conditioning=timed,
                          seq_len=seq_len, overrides=overrides)
    model = network_of(config)
    apply = jax.jit(lambda p, x_t, t, inputs: model.apply({"params": p}, x_t, t, **inputs))

    def model_fn(x_t: Any, t: Any, **inputs: Any) -> jax.Array:
        """Float32 logits [B, L, K] at tokens x_t int [B, L] and process time t [B] (numpy or
        jax, traced too); `inputs`: the network's keyword inputs (e.g. output_positions)."""
        return apply(params, jnp.asarray(x_t, jnp.int32), jnp.asarray(t, jnp.float32), inputs)

    info = {**info, "kind": kind, "graph": graph, "num_heads": heads, "time_conditioning": timed,
            "mask_row_dropped": mask_id, **sizes}
    return Loaded(config=config, params=params, model_fn=model_fn, info=info)


def network_of(config: ml_collections.ConfigDict) -> models_lib.DiffusionTransformer:
    """The DiT of a converted config (K = config.process.num_classes)."""
    k = int(config.process.num_classes)
    return models_lib.get_model(config, k, k + (config.process.name == "masked"))


__all__ = ["KINDS", "Loaded", "build_config", "load", "network_of"]
