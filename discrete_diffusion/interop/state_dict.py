"""Reading a reference DiT's state_dict (MDLM, Duo, UDLM, SEDD) into numpy, without torch when possible.

Formats:
  * `.safetensors`: the `safetensors` package's numpy API (no torch).
  * a torch pickle (`.ckpt`, `.pt`, `.pth`, `.bin`): needs torch (`pip install
    "discrete_diffusion[torch]"`). Layouts: a bare state_dict (Hugging Face `pytorch_model.bin`),
    a Lightning checkpoint {'state_dict', 'ema'} (MDLM, Duo, UDLM) or SEDD's {'model', 'ema'}.
  * a folder: its `model.safetensors`, else `pytorch_model.bin`.

Keys are the reference DiT's own names (`vocab_embed.embedding`, `blocks.0.attn_qkv.weight`, ...),
optionally under a prefix (`backbone.` in Lightning checkpoints and the Hugging Face repositories,
`module.` under DDP), found by locating `vocab_embed.embedding`.

EMA. MDLM/Duo/UDLM (`models/ema.py`) and SEDD keep `ema['shadow_params']`, a list in the order of
`module.parameters()`, which is the state_dict's order without its buffers (the DiT's only buffer
is `rotary_emb.inv_freq`); the backbone's parameters come first (MDLM chains the noise schedule's
after them).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

ANCHOR = "vocab_embed.embedding"
BUFFERS = ("rotary_emb.inv_freq",)
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")
TORCH_EXTRA = 'torch is needed to read a torch pickle: pip install "discrete_diffusion[torch]"'


def resolve_path(path: str | os.PathLike) -> str:
    """The weights file of `path` (a file, or a folder holding one of FOLDER_FILES)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in FOLDER_FILES:
            if os.path.exists(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(f"{path} holds none of {list(FOLDER_FILES)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return dict(load_file(path))


def _to_numpy(value: Any) -> Any:
    """Tensors -> float32/int numpy (bfloat16 has no numpy dtype); containers recursively."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.is_floating_point() else value).numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_numpy(v) for v in value]
    return value


def _read_torch(path: str) -> dict[str, Any]:
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"{path}: {TORCH_EXTRA} (or convert it to .safetensors elsewhere)") from err
    # Lightning checkpoints pickle their hyper-parameters (omegaconf objects): a full unpickle,
    # so load only checkpoints you trust
    obj = torch.load(path, map_location="cpu", weights_only=False)
    return _to_numpy(obj)


def _sub_dict(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    """(the DiT's entries with the prefix removed, the prefix)."""
    prefixes = sorted({k[: -len(ANCHOR)] for k in state if k.endswith(ANCHOR)}, key=len)
    if not prefixes:
        raise ValueError(f"no '{ANCHOR}' key (with or without a prefix such as 'backbone.'): "
                         f"not a state_dict of the reference DiT; keys start {sorted(state)[:5]}")
    prefix = prefixes[0]
    return {k[len(prefix):]: np.asarray(v) for k, v in state.items() if k.startswith(prefix)}, prefix


def _apply_ema(weights: dict[str, np.ndarray], ema: Any, path: str) -> dict[str, np.ndarray]:
    """`weights` with the parameters replaced by EMA's shadow_params (module.parameters() order)."""
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if shadow is None:
        raise ValueError(f"{path}: its 'ema' entry has no 'shadow_params' list")
    names = [k for k in weights if k not in BUFFERS]
    if len(shadow) < len(names):
        raise ValueError(f"{path}: {len(shadow)} EMA shadow parameters for the DiT's {len(names)}")
    out = dict(weights)
    for name, value in zip(names, shadow[: len(names)], strict=True):
        value = np.asarray(value)
        if value.shape != weights[name].shape:
            raise ValueError(f"{path}: the EMA parameter for {name} has shape {value.shape}, the "
                             f"weights {weights[name].shape} (EMA list out of order?)")
        out[name] = value
    return out


def read_state_dict(path: str | os.PathLike, *,
                    ema: bool | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(the reference DiT's weights {name: array} without prefix, info).

    ema: None uses the EMA weights when the checkpoint holds them, True requires them, False
    takes the raw weights. info: {'file', 'prefix', 'ema' (bool: EMA weights taken)}.
    """
    file = resolve_path(path)
    if file.endswith(".safetensors"):
        obj: dict[str, Any] = _read_safetensors(file)
    elif file.endswith(TORCH_SUFFIXES):
        obj = _read_torch(file)
    else:
        raise ValueError(f"{file}: unknown checkpoint format; expected .safetensors or a torch "
                         f"pickle ({', '.join(TORCH_SUFFIXES)})")
    ema_state = None
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):  # Lightning
        ema_state, obj = obj.get("ema"), obj["state_dict"]
    elif "model" in obj and isinstance(obj["model"], dict):  # SEDD's checkpoints
        ema_state, obj = obj.get("ema"), obj["model"]
    weights, prefix = _sub_dict(obj)
    use_ema = ema_state is not None if ema is None else bool(ema)
    if use_ema:
        if ema_state is None:
            raise ValueError(f"ema=True but {file} holds no EMA weights (only a state_dict)")
        weights = _apply_ema(weights, ema_state, file)
    return weights, {"file": file, "prefix": prefix, "ema": use_ema}


def read_config_json(path: str | os.PathLike) -> dict:
    """The `config.json` beside the weights (Hugging Face repositories), or {}."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    file = os.path.join(folder, "config.json")
    if not os.path.exists(file):
        return {}
    with open(file) as f:
        return json.load(f)


def config_value(config_json: dict, field: str) -> Any:
    """`field` at the top of config.json (MDLM/Duo/UDLM hub configs) or under 'model' (SEDD's
    Hydra config), else None."""
    if field in config_json:
        return config_json[field]
    model = config_json.get("model")
    return model.get(field) if isinstance(model, dict) else None
