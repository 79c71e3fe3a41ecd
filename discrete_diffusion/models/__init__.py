"""Flax (linen) networks and `get_model`, which builds one from `config.model`.

`config.model` fields read here (all optional except `name` and `size`):

    name               'dit' (DiffusionTransformer) | 'ar' (AutoregressiveTransformer)
    size               'tiny' | 'small' | 'medium' | 'custom' (custom needs num_layers, d_model,
                       num_heads; cond_dim defaults to 128)
    num_layers, d_model, num_heads, cond_dim   override the size's values
    mlp_ratio          4
    dropout            0.1 (the papers' value)
    time_conditioning  True for 'dit' (Duo/UDLM), set False for MDLM; always False for 'ar'
    dtype              'float32' | 'bfloat16' (compute dtype; params and logits are float32)
    noise_input        False (True for the uniform_absorbing process)
    num_labels         0 (unconditional); > 0 for class-conditional models
    latent_dim         0 (no latent); Z > 0: the network takes a latent z [B, Z] (VADD)
    pos_embedding      'rotary' (the default: relative positions only, today's network bit for
                       bit) | 'rotary+learned' (also a learned absolute table pos_embed
                       [seq_len, D] added to the input embedding; its length is the data's
                       seq_len, config.data.seq_len or the dataset's default)
    attention_impl     None (auto: 'blockwise' on the CPU when L > attention_block, else
                       'matmul'; attention.auto_implementation) | 'matmul' (two einsums) |
                       'xla' | 'cudnn' | 'blockwise' (pure-JAX flash-style attention,
                       models/attention.py: no [B, H, L, L] probabilities kept)
    attention_block    512: queries and keys per block of 'blockwise' (cut to L when longer)
    remat              False | True: recompute each block in the backward pass
    time_input         'scaled_t' (1000 t, the default) | 'sigma' (-log alpha_t of
                       config.process.schedule, the reference DiTs' input; models/time_input.py)
    scale_by_sigma     False | True: SEDD's absorbing-graph log-score shift of the output
                       (needs time_input='sigma', the masked process, parameterization 'score')

Other fields of `config.model` (e.g. `parameterization`) are ignored here.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from discrete_diffusion.models.time_input import TIME_INPUTS, time_input_of
from discrete_diffusion.models.transformer import (
    POS_EMBEDDINGS,
    SIZES,
    AutoregressiveTransformer,
    DiffusionTransformer,
    ar_inputs,
    example_inputs,
)
from discrete_diffusion.sharding import mesh_fields

__all__ = [
    "POS_EMBEDDINGS",
    "SIZES",
    "TIME_INPUTS",
    "AutoregressiveTransformer",
    "DiffusionTransformer",
    "ar_inputs",
    "example_inputs",
    "get_model",
    "time_input_of",
]

MODELS = {"dit": DiffusionTransformer, "ar": AutoregressiveTransformer}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ATTENTION_IMPLS = (None, "matmul", "xla", "cudnn", "blockwise")
_SIZE_FIELDS = ("num_layers", "d_model", "num_heads", "cond_dim")


def _choice(cfg: Any, field: str, allowed: list | tuple, default: Any = None) -> Any:
    """cfg.get(field, default), raising a ValueError that names the field unless it is allowed."""
    value = cfg.get(field, default)
    if value not in allowed:
        raise ValueError(f"config.model.{field}={value!r} is not one of {list(allowed)}")
    return value


def data_seq_len(config: Any) -> int | None:
    """The data's sequence length: config.data.seq_len, or the dataset's default when it is None;
    None when the config has no data section (the model then takes the length of its init input)."""
    data = config.get("data", None)
    if data is None:
        return None
    seq_len = data.get("seq_len", None)
    if seq_len is None:
        from discrete_diffusion.data.bundle import DEFAULT_SEQ_LEN

        seq_len = DEFAULT_SEQ_LEN.get(data.get("name", None), None)
    return None if seq_len is None else int(seq_len)


def attention_block_of(model_config: Any) -> int:
    """`config.model.attention_block` (512 if absent), validated: an int > 0."""
    block = model_config.get("attention_block", 512)
    if isinstance(block, bool) or not isinstance(block, int) or block <= 0:
        raise ValueError(f"config.model.attention_block={block!r} must be an int > 0 (queries and "
                         "keys per block of attention_impl='blockwise')")
    return block


def get_model(config: Any, num_classes: int, input_vocab_size: int) -> DiffusionTransformer:
    """Build the network described by `config.model` (an ml_collections ConfigDict section).

    num_classes: K, the width of the logits. input_vocab_size: the number of input ids (K + 1 for
    masked diffusion, K for uniform; for 'ar', large enough to hold the BOS id).
    Returns an unbound linen module; initialise it with
    `model.init(key, **example_inputs(model, batch_size, seq_len))`.
    """
    cfg = config.model
    name = _choice(cfg, "name", list(MODELS))
    size = _choice(cfg, "size", [*SIZES, "custom"])
    dtype = DTYPES[_choice(cfg, "dtype", list(DTYPES), "float32")]
    attention_impl = _choice(cfg, "attention_impl", ATTENTION_IMPLS, None)
    attention_block = attention_block_of(cfg)
    pos_embedding = _choice(cfg, "pos_embedding", POS_EMBEDDINGS, "rotary")
    max_len = data_seq_len(config) if pos_embedding == "rotary+learned" else None

    sizes = dict(SIZES[size]) if size != "custom" else {"cond_dim": 128}
    for field in _SIZE_FIELDS:
        value = cfg.get(field, None)
        if value is not None:
            sizes[field] = int(value)
        elif field not in sizes:
            raise ValueError(f"config.model.{field} must be set when config.model.size='custom'")
    for field in _SIZE_FIELDS:
        if sizes[field] <= 0:
            raise ValueError(f"config.model.{field}={sizes[field]} must be positive")
    head_dim, rem = divmod(sizes["d_model"], sizes["num_heads"])
    if rem or head_dim % 2:
        raise ValueError(
            f"config.model.d_model={sizes['d_model']} must be divisible by config.model.num_heads="
            f"{sizes['num_heads']} with an even head dim (rotary embeddings)"
        )

    time_conditioning = bool(cfg.get("time_conditioning", name == "dit"))
    if name == "ar" and time_conditioning:
        raise ValueError("config.model.time_conditioning=True is not supported for name='ar'")
    num_labels = int(cfg.get("num_labels", 0))
    if num_labels < 0:
        raise ValueError(f"config.model.num_labels={num_labels} must be >= 0")
    latent_dim = cfg.get("latent_dim", 0)
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 0:
        raise ValueError(f"config.model.latent_dim={latent_dim!r} must be an int >= 0")
    dropout = float(cfg.get("dropout", 0.1))
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"config.model.dropout={dropout} must be in [0, 1)")
    time_input, schedule = time_input_of(config)
    # only non-default time fields are passed: the default network is the same module as before
    time_fields = {} if time_input == "scaled_t" else dict(
        time_input=time_input, schedule=schedule, scale_by_sigma=bool(cfg.get("scale_by_sigma", False)))

    return MODELS[name](
        num_classes=num_classes,
        input_vocab_size=input_vocab_size,
        **sizes,
        mlp_ratio=int(cfg.get("mlp_ratio", 4)),
        dropout=dropout,
        time_conditioning=time_conditioning,
        noise_input=bool(cfg.get("noise_input", False)),
        num_labels=num_labels,
        latent_dim=latent_dim,
        pos_embedding=pos_embedding,
        max_len=max_len,
        remat=bool(cfg.get("remat", False)),
        attention_impl=attention_impl,
        attention_block=attention_block,
        # no 'tensor' mesh axis splits the heads: the qkv product may flatten its kernel
        qkv_flat=mesh_fields(config.get("mesh", None))[2] == 1,
        dtype=dtype,
        param_dtype=jnp.float32,
        **time_fields,
    )
