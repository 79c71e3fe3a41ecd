"""progress.line: tqdm's meter with the remaining time, and the time budget when it ends first."""

from discrete_diffusion import progress


def test_line_gives_the_remaining_time_at_the_rate():
    assert progress.line("frontier", 3, 24, 62.0, unit="point") == (
        "frontier: 3/24 points (12%) [01:02<07:14, 20.67s/point]")  # 21 x 62 / 3 = 434 s
    assert progress.line("train", 1600, 8000, 500.0, unit="step", rate=3.2) == (
        "train: 1600/8000 steps (20%) [08:20<33:20,  3.20step/s]")  # 6400 / 3.2 = 2000 s


def test_line_says_when_the_time_budget_ends_the_work_first():
    text = progress.line("train", 1600, 8000, 500.0, unit="step", rate=3.2, budget_s=600.0)
    assert text.endswith("; the time budget ends it in 01:40")
    roomy = progress.line("train", 1600, 8000, 500.0, unit="step", rate=3.2, budget_s=3600.0)
    assert "budget" not in roomy
