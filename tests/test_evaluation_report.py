"""evaluation.report: --mode=eval's default is the held-out NELBO plus one sample set (the
frontier sweep only when asked), and on synthetic data it reports the impossible samples'
fraction and the perplexity of the rest."""

from __future__ import annotations

import math

from test_train import tiny_config

from configs import base
from discrete_diffusion import training
from discrete_diffusion.evaluation import report
from discrete_diffusion.training import trainer as trainer_lib


def test_default_eval_is_likelihood_and_one_sample_set(tmp_path, capsys, monkeypatch):
    assert base.get_config().eval.frontier is False
    config = tiny_config(num_steps=2)
    training.train_and_evaluate(config, str(tmp_path))
    config.eval.num_samples = 8
    capsys.readouterr()
    monkeypatch.setattr(trainer_lib, "EVAL_REPORT_EVERY_S", 0.0)  # every batch says how far
    summary = report.evaluate_workdir(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "[eval] likelihood: 1/2 batches (50%) [" in out  # the progress line with its ETA
    assert math.isfinite(summary["eval_nelbo"]) and summary["judge"] == "exact"
    assert 0 <= summary["frac_impossible"] <= 1 and "gen_ppl_possible" in summary
    if summary["frac_impossible"] < 1:
        assert math.isfinite(summary["gen_ppl_possible"])
    assert not (tmp_path / "eval" / "frontier.json").exists()
    assert "frontier not swept (config.eval.frontier=False)" in out
