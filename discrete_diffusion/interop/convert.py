"""The reference DiT's weights (MDLM/Duo/UDLM/SEDD `models/dit.py`, torch layout) -> our parameter tree.

The two networks compute the same function (adaLN chunk order and modulate, scale-only LayerNorm
with eps 1e-5, rotate-half rotary with base 10000, tanh-GELU MLP, no qkv bias, [cos, sin]
sinusoid of width 256); the layouts differ by reshapes only. torch Linear weights are
[out, in] (ours [in, out]); with D = H Dh:

    blocks.i.attn_qkv.weight [3D, D]  -> blocks_i/attn/qkv/kernel [D, 3, H, Dh]   (W^T reshaped)
    blocks.i.attn_out.weight [D, D]   -> blocks_i/attn/out/kernel [H, Dh, D]      (W^T reshaped)
    output_layer.linear [V, D], [V]   -> final/out/kernel [D, K], bias [K]        (mask row dropped)

Output width. A masked reference model outputs V = K + 1 logits; MDLM's SUBS overwrites the mask
entry with -inf and SEDD's absorbing score carries a mask column. Ours outputs the K clean
classes, so the mask row `mask_id` is dropped (our parameterizations complete the mask entry).

Untimed networks (MDLM OWT: time_conditioning False). The reference still applies its time MLP,
to sigma = 0, so every adaLN sees the constant c0 = silu(mlp(emb(0))), emb(0) = [1]*128 + [0]*128;
ours, untimed, feeds cond = 0, where adaLN(0) = b. Folding

    b' = b + W c0         (each block's adaLN [6D] and the final one [2D])                    (1)

in float64 gives the reference's modulation exactly, up to one float32 rounding of b'.
"""

from __future__ import annotations

import re

import numpy as np

FREQ_DIM = 256
# Every name of the reference DiT this conversion reads (and the rotary buffer, checked apart)
KNOWN = re.compile(
    r"vocab_embed\.embedding|rotary_emb\.inv_freq|sigma_map\.mlp\.[02]\.(weight|bias)"
    r"|blocks\.\d+\.(norm[12]\.weight|attn_qkv\.weight|attn_out\.weight|mlp\.[02]\.(weight|bias)"
    r"|adaLN_modulation\.(weight|bias))"
    r"|output_layer\.(norm_final\.weight|linear\.(weight|bias)|adaLN_modulation\.(weight|bias))")


def _req(weights: dict[str, np.ndarray], name: str, dtype: type = np.float32) -> np.ndarray:
    if name not in weights:
        raise ValueError(f"the state_dict lacks '{name}' (keys of the reference DiT expected)")
    return np.asarray(weights[name], dtype)


def infer_sizes(weights: dict[str, np.ndarray]) -> dict[str, int]:
    """num_layers, d_model, cond_dim, mlp_ratio, input_vocab_size, output_width from the shapes."""
    embed = _req(weights, "vocab_embed.embedding")
    if embed.ndim != 2:
        raise ValueError(f"vocab_embed.embedding has shape {embed.shape}, expected [V, D]")
    vocab, d_model = embed.shape
    blocks = sorted({int(m.group(1)) for k in weights if (m := re.match(r"blocks\.(\d+)\.", k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError(f"expected blocks.0 ... blocks.N-1 in the state_dict, found {blocks}")
    adaln = _req(weights, "blocks.0.adaLN_modulation.weight")
    if adaln.shape[0] != 6 * d_model:
        raise ValueError(f"blocks.0.adaLN_modulation.weight has shape {adaln.shape}, expected "
                         f"[6 D, C] with D = {d_model}")
    hidden = _req(weights, "blocks.0.mlp.0.weight").shape[0]
    if hidden % d_model:
        raise ValueError(f"blocks.0.mlp.0.weight has {hidden} rows, not a multiple of D={d_model}")
    out = _req(weights, "output_layer.linear.weight")
    if out.shape[1] != d_model:
        raise ValueError(f"output_layer.linear.weight has shape {out.shape}, expected [V, {d_model}]")
    return dict(num_layers=len(blocks), d_model=d_model, cond_dim=adaln.shape[1],
                mlp_ratio=hidden // d_model, input_vocab_size=vocab, output_width=out.shape[0])


def _dense(weight: np.ndarray, bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    out = {"kernel": weight.T}
    if bias is not None:
        out["bias"] = bias
    return out


def time_mlp_at_zero(weights: dict[str, np.ndarray]) -> np.ndarray:
    """c0 = silu(fc2(silu(fc1(emb(0))))) `[C]` in float64: the untimed reference's conditioning."""
    emb = np.concatenate([np.ones(FREQ_DIM // 2), np.zeros(FREQ_DIM // 2)])
    w1, b1, w2, b2 = (_req(weights, f"sigma_map.mlp.{n}", np.float64)
                      for n in ("0.weight", "0.bias", "2.weight", "2.bias"))
    if w1.shape[1] != FREQ_DIM:
        raise ValueError(f"sigma_map.mlp.0.weight has shape {w1.shape}, expected [C, {FREQ_DIM}]")

    def silu(x):
        return x / (1.0 + np.exp(-x))

    return silu(w2 @ silu(w1 @ emb + b1) + b2)


def convert(weights: dict[str, np.ndarray], *, num_heads: int, time_conditioning: bool,
            mask_id: int | None) -> dict:
    """Our parameter tree (float32 numpy) of the reference weights (the fold in float64).

    num_heads: H (not in the shapes). time_conditioning False: fold the constant conditioning
    into the adaLN biases (equation (1)) and drop the time MLP. mask_id: the output row to drop
    (masked models), or None.
    """
    unknown = sorted(k for k in weights if not KNOWN.fullmatch(k))
    if unknown:
        raise ValueError(f"parameters the conversion does not know (a class-conditional cond_map, "
                         f"a causal or other architecture?): {unknown[:8]}")
    sizes = infer_sizes(weights)
    D, C = sizes["d_model"], sizes["cond_dim"]
    if num_heads <= 0 or D % num_heads or (D // num_heads) % 2:
        raise ValueError(f"num_heads={num_heads} must divide d_model={D} with an even head dim")
    H, Dh = num_heads, D // num_heads
    c0 = None if time_conditioning else time_mlp_at_zero(weights)

    def adaln(prefix: str) -> dict[str, np.ndarray]:
        w, b = _req(weights, f"{prefix}.weight", np.float64), _req(weights, f"{prefix}.bias", np.float64)
        if w.shape[1] != C:
            raise ValueError(f"{prefix}.weight has shape {w.shape}, expected [*, C={C}]")
        return _dense(w, b if c0 is None else b + w @ c0)  # (1), in float64

    params: dict = {"token_embed": {"embedding": _req(weights, "vocab_embed.embedding")}}
    if time_conditioning:
        params["time_embed"] = {
            "fc1": _dense(_req(weights, "sigma_map.mlp.0.weight"), _req(weights, "sigma_map.mlp.0.bias")),
            "fc2": _dense(_req(weights, "sigma_map.mlp.2.weight"), _req(weights, "sigma_map.mlp.2.bias")),
        }
    for i in range(sizes["num_layers"]):
        p = f"blocks.{i}"
        qkv = _req(weights, f"{p}.attn_qkv.weight")
        attn_out = _req(weights, f"{p}.attn_out.weight")
        if qkv.shape != (3 * D, D) or attn_out.shape != (D, D):
            raise ValueError(f"{p}: attn_qkv {qkv.shape} / attn_out {attn_out.shape}, expected "
                             f"[{3 * D}, {D}] / [{D}, {D}]")
        params[f"blocks_{i}"] = {
            "norm1": {"scale": _req(weights, f"{p}.norm1.weight")},
            "norm2": {"scale": _req(weights, f"{p}.norm2.weight")},
            "adaln": adaln(f"{p}.adaLN_modulation"),
            "attn": {"qkv": {"kernel": qkv.T.reshape(D, 3, H, Dh)},
                     "out": {"kernel": attn_out.T.reshape(H, Dh, D)}},
            "mlp": {"fc1": _dense(_req(weights, f"{p}.mlp.0.weight"), _req(weights, f"{p}.mlp.0.bias")),
                    "fc2": _dense(_req(weights, f"{p}.mlp.2.weight"), _req(weights, f"{p}.mlp.2.bias"))},
        }
    out_w = _req(weights, "output_layer.linear.weight")
    out_b = _req(weights, "output_layer.linear.bias")
    if mask_id is not None:
        keep = np.arange(out_w.shape[0]) != mask_id
        out_w, out_b = out_w[keep], out_b[keep]
    params["final"] = {
        "norm": {"scale": _req(weights, "output_layer.norm_final.weight")},
        "adaln": adaln("output_layer.adaLN_modulation"),
        "out": _dense(out_w, out_b),
    }
    return _cast(params)


def _cast(tree: dict) -> dict:
    return {k: _cast(v) if isinstance(v, dict) else np.asarray(v, np.float32) for k, v in tree.items()}


def heads_from_rotary(weights: dict[str, np.ndarray]) -> int | None:
    """H = D / Dh from the rotary buffer `rotary_emb.inv_freq` [Dh / 2] (a persistent buffer, so
    in torch state_dicts), else None."""
    inv_freq = weights.get("rotary_emb.inv_freq")
    if inv_freq is None:
        return None
    d_model = np.asarray(weights["vocab_embed.embedding"]).shape[1]
    head_dim = 2 * np.asarray(inv_freq).shape[0]
    return d_model // head_dim if head_dim and d_model % head_dim == 0 else None


__all__ = ["FREQ_DIM", "convert", "heads_from_rotary", "infer_sizes", "time_mlp_at_zero"]
