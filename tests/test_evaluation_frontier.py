"""evaluation/frontier.py: the sweep grid, its validation, generation sharing across sweeps, the
rows, CSV/JSON and the plots; end to end on a trained synthetic model (exact judge) in
tests/test_main.py::test_eval_mode_writes_likelihood_samples_and_frontier."""

from __future__ import annotations

import csv
import json
import math
import re
import types

import ml_collections
import numpy as np
import pytest

from configs import shakespeare_absorbing, shakespeare_uniform
from discrete_diffusion import config_validation
from discrete_diffusion.data.synthetic import MarkovChain
from discrete_diffusion.evaluation import exact_judge, frontier, text_stats


def small_eval(config, **fields):
    config.eval.steps = (8, 16)
    config.eval.temperatures = (0.5, 1.0)
    config.eval.top_ps = (0.9, 1.0)
    config.sampler.num_steps = 16
    for k, v in fields.items():
        config.eval[k] = v
    return config


def test_grid_masked_and_uniform():
    config = small_eval(shakespeare_absorbing.get_config())
    points = frontier.grid(config, seq_len=32)
    assert {p.sampler for p in points} == {"ancestral", "psi", "first_hitting"}
    anc = [p for p in points if p.sampler == "ancestral"]
    assert [(p.sweep, p.num_steps, p.temperature, p.top_p) for p in anc] == [
        ("steps", 8, 1.0, 1.0), ("steps", 16, 1.0, 1.0),
        ("temperature", 16, 0.5, 1.0), ("temperature", 16, 1.0, 1.0),
        ("top_p", 16, 1.0, 0.9), ("top_p", 16, 1.0, 1.0)]
    # first-hitting: L calls of one token, or ceil(L / steps) tokens per call on its steps sweep
    fhs = [p for p in points if p.sampler == "first_hitting" and p.sweep == "steps"]
    assert [(p.num_steps, p.tokens_per_step) for p in fhs] == [(32, 4), (32, 2)]
    # the three sweeps meet at (16 steps, T = 1, top_p = 1): one generation for three rows
    assert len({p.settings() for p in anc}) == 4
    uniform = frontier.grid(small_eval(shakespeare_uniform.get_config()), seq_len=32)
    assert {p.sampler for p in uniform} == {"ancestral", "psi", "informed_pc"}
    psi = next(p for p in uniform if p.sampler == "psi").sampler_config(config.sampler)
    assert psi.name == "psi" and psi.kappa_schedule == "phases"


@pytest.mark.parametrize("field, value, message", [
    ("judge", "gpt2", "config.eval.judge"),
    ("samplers", "ancestral,dpm", "config.eval.samplers"),
    ("categoricals", ("exact", "float16"), "config.eval.categoricals"),
    ("temperatures", (0.0,), "config.eval.temperatures"),
    ("top_ps", (1.5,), "top_ps"),
    ("steps", (0,), "config.eval.steps"),
    ("num_samples", 0, "config.eval.num_samples"),
])
def test_bad_eval_fields_are_named(field, value, message):
    config = shakespeare_absorbing.get_config()
    config.eval[field] = value
    with pytest.raises(ValueError, match=message):
        config_validation.validate(config)


def test_sweep_rows_files_and_plots(tmp_path):
    """A fake model: samples of a Markov chain at temperature T (its transition rows raised to
    1/T), judged by the true chain. Lower T must give lower entropy and lower generative
    perplexity, and the written files must hold exactly the rows."""
    chain = MarkovChain.random(8, support=4, concentration=0.5, seed=0)
    calls = []

    def generate(sampler, key, n):
        calls.append(sampler.to_dict())
        t = float(sampler.temperature)
        rng = np.random.default_rng(int(sampler.num_steps))
        trans = chain.transition ** (1.0 / t)
        trans /= trans.sum(-1, keepdims=True)
        x = np.zeros((n, 24), np.int64)
        x[:, 0] = rng.choice(8, size=n, p=chain.initial)
        for i in range(1, 24):
            u = rng.random((n, 1))
            x[:, i] = (np.cumsum(trans[x[:, i - 1]], -1) < u).sum(-1)
        return x, int(sampler.num_steps)

    def judge(tokens, texts):
        r = exact_judge.markov_judge(chain, tokens)
        return {"gen_ppl": r["gen_ppl"], "gen_ppl_se": r["gen_ppl"] * r["gap_se"]}

    def stats(tokens, texts):
        return {"unigram_entropy": text_stats.summarize(tokens)["unigram_entropy"]}

    config = small_eval(shakespeare_absorbing.get_config(), samplers="ancestral",
                        temperatures=(0.5, 0.8, 1.0))
    points = frontier.grid(config, seq_len=24)
    base = ml_collections.ConfigDict({"name": "ancestral", "num_steps": 16, "temperature": 1.0,
                                      "top_p": 1.0, "reuse_output": True})
    logs = []
    rows = frontier.run_sweep(generate, lambda r: " ".join(map(str, r)), points, base, 400, judge,
                              stats, log=logs.append)
    assert len(rows) == len(points) == 7 and len(logs) == 7
    assert "; frontier: 7/7 points (100%) [" in logs[-1]  # the progress line with its ETA
    assert re.search(r"; frontier: 3/7 points \(43%\) \[\d\d:\d\d<\d\d:\d\d", logs[2])
    assert len(calls) == len({p.settings() for p in points}) == 5  # shared generations
    assert all(c["reuse_output"] and c["name"] == "ancestral" for c in calls)  # base kept
    temp = sorted((r for r in rows if r["sweep"] == "temperature"), key=lambda r: r["temperature"])
    assert [r["temperature"] for r in temp] == [0.5, 0.8, 1.0]
    ent = [r["unigram_entropy"] for r in temp]
    ppl = [r["gen_ppl"] for r in temp]
    assert ent[0] < ent[1] < ent[2] and ppl[0] < ppl[1] < ppl[2]
    true_ppl = exact_judge.markov_judge(chain, generate(base, None, 400)[0])["true_ppl"]
    assert abs(ppl[2] / true_ppl - 1) < 0.05  # T = 1 samples the chain itself

    csv_path, json_path = frontier.write_rows(rows, str(tmp_path))
    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 7 and float(table[0]["gen_ppl"]) == pytest.approx(rows[0]["gen_ppl"])
    assert 0 < float(table[0]["gen_ppl_se"]) < 0.05 * float(table[0]["gen_ppl"])
    with open(json_path) as f:
        assert json.load(f)[3]["sweep"] == rows[3]["sweep"]
    pngs = frontier.plot(rows, str(tmp_path), title="test")
    assert [p.rsplit("/", 1)[1] for p in pngs] == ["frontier_unigram_entropy.png", "frontier_nfe.png"]
    for p in pngs:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # without a judge: entropy against NFE only
    no_judge = [{k: v for k, v in r.items() if k != "gen_ppl"} for r in rows]
    assert len(frontier.plot(no_judge, str(tmp_path / "nj"), title="")) == 1


def test_informed_pc_is_compared_at_equal_nfe():
    """A steps-sweep point of s network calls runs the informed-PC predictor steps
    whose NFE (corrector sweeps included) is at most s, not s predictor steps (about 3 s calls)."""
    from discrete_diffusion.sampling import informed_pc

    config = small_eval(shakespeare_uniform.get_config(), steps=(8, 16, 64),
                        samplers="ancestral,informed_pc,informed_pc_mh")
    points = frontier.grid(config, seq_len=32)
    assert [p.num_steps for p in points if p.sampler == "ancestral" and p.sweep == "steps"] == [8, 16, 64]
    for preset, c, mh in [("informed_pc", 2, False), ("informed_pc_mh", 2, True)]:
        pts = [p for p in points if p.sampler == preset]
        steps = [p.num_steps for p in pts if p.sweep == "steps"]
        for budget, n in zip((8, 16, 64), steps, strict=True):
            assert informed_pc.nfe(n, c, mh) <= budget < informed_pc.nfe(n + 1, c, mh)
        # temperature and nucleus sweeps: at the NFE of config.sampler.num_steps = 16
        assert {p.num_steps for p in pts if p.sweep != "steps"} == {informed_pc.steps_for_budget(16, c, mh)}
    config.sampler.name = "informed_pc"
    config.sampler.corrector_steps = 1
    pts = [p for p in frontier.grid(config, seq_len=32) if p.sampler == "informed_pc" and p.sweep == "steps"]
    assert [p.num_steps for p in pts] == [4, 8, 32]  # n + (n - 1) <= budget


def test_uniform_absorbing_frontier_uses_audm_and_reaudm():
    """'ancestral' does not sample 'uniform_absorbing'; the auto presets are AUDM's."""
    from configs import shakespeare_uniform_absorbing
    from discrete_diffusion import sampling

    config = small_eval(shakespeare_uniform_absorbing.get_config())
    points = frontier.grid(config, seq_len=32)
    assert {p.sampler for p in points} == {"audm", "reaudm"}
    for p in points:
        trial = ml_collections.ConfigDict(config.to_dict())
        trial.sampler = p.sampler_config(config.sampler)
        assert sampling.sampler_settings(trial)["name"] == p.sampler


def test_points_drop_the_fields_their_sampler_does_not_read():
    config = small_eval(shakespeare_absorbing.get_config(), samplers="ancestral,first_hitting")
    config.sampler.tokens_per_step = 1
    config.sampler.temperature_on = "denoiser"
    for p in frontier.grid(config, seq_len=32):
        cfg = p.sampler_config(config.sampler)
        assert ("tokens_per_step" in cfg) == (p.sampler == "first_hitting")
        assert cfg.temperature_on == "denoiser"  # shared fields stay
    base = ml_collections.ConfigDict({"name": "ancestral", "num_steps": 4})
    point = frontier.grid(config, seq_len=32)[0]
    assert "temperature_on" not in point.sampler_config(base)  # the per-process default applies


def test_exact_judge_reports_the_standard_error_of_its_perplexity():
    """make_judge('exact'): gen_ppl_se = gen_ppl x SE of the mean NLL per token (delta method),
    which shrinks as 1/sqrt(N) with the number of samples."""
    chain = MarkovChain.random(6, support=3, concentration=0.5, seed=1)
    config = shakespeare_absorbing.get_config()
    config.eval.judge = "exact"
    judge = frontier.make_judge(config, types.SimpleNamespace(info={"chain": chain}))
    x = chain.sample(1600, 16, seed=0)
    small, big = judge(x[:100], []), judge(x, [])
    nll = exact_judge.sequence_nll(chain, x) / 16
    assert big["gen_ppl_se"] == pytest.approx(
        big["gen_ppl"] * np.std(nll, ddof=1) / math.sqrt(1600), rel=1e-9)
    assert small["gen_ppl_se"] / big["gen_ppl_se"] == pytest.approx(4.0, rel=0.25)


def test_text_stats_carry_the_real_word_fraction_of_text_corpora():
    tokenizer = types.SimpleNamespace(eos_id=None)
    tokens = np.array([[1, 2, 3], [3, 2, 1]])
    texts = ["the kinq is", "dead king"]
    with_words = frontier.make_stats(types.SimpleNamespace(
        tokenizer=tokenizer, info={"word_vocabulary": lambda: frozenset({"the", "is", "king"})}))
    assert with_words(tokens, texts)["real_word_fraction"] == pytest.approx(3 / 5)
    no_words = frontier.make_stats(types.SimpleNamespace(tokenizer=tokenizer, info={}))
    assert "real_word_fraction" not in no_words(tokens, texts)
