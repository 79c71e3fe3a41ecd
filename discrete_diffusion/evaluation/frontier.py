"""Quality-diversity frontiers of a trained model: generative perplexity against unigram entropy
and against the number of network calls, swept over samplers, steps, temperature and nucleus.

Generative perplexity alone rewards low-temperature sampling (a model that repeats one word has a
tiny perplexity under any judge), so every point also reports the mean per-sample unigram entropy
(`text_stats`); a sampler is better only if its frontier lies below (lower perplexity at the same
entropy). For the synthetic Markov corpus the judge is the true generator (`exact_judge`), whose
perplexity on its own samples is exp(entropy rate).

The grid (`config.eval`, configs/base.py), for each sampler of `config.eval.samplers`:

    steps sweep         num_steps in config.eval.steps,        temperature 1, top_p 1
    temperature sweep   temperature in config.eval.temperatures, num_steps = config.sampler.num_steps
    nucleus sweep       top_p in config.eval.top_ps,             num_steps = config.sampler.num_steps

each with every categorical method of `config.eval.categoricals` ('exact' and/or 'float32': the
float-precision ablation, see benchmarks/float_precision.py). First-hitting always makes L network
calls at one token per call; its steps sweep sets `tokens_per_step = ceil(L / steps)` (the
approximate parallel variant) so that it too spans the NFE axis. Informed PC is compared at equal
NFE: a point of `steps` network calls runs `informed_pc.steps_for_budget(steps, corrector_steps,
mh_correct)` predictor steps (its corrector sweeps cost network calls too). The other fields of
`config.sampler` (kappa schedules, bridges, corrector settings) apply to every point whose sampler
reads them; a point drops the fields its sampler does not read (`sampling.only_fields_of`: e.g.
`tokens_per_step` of a first-hitting config on the ancestral points), since samplers reject
fields they do not read. `temperature_on` is left to the config (default: per process,
`sampling.default_temperature_on`), so the temperature sweeps temper what the samplers temper.

    python -m discrete_diffusion.evaluation.frontier --config=configs/shakespeare_absorbing.py \\
        --workdir=runs/shakespeare_absorbing [--out_dir=DIR] \\
        [--config.eval.judge=ar:runs/shakespeare_ar ...]

writes workdir/eval/ (or --out_dir) frontier.{csv,json} (the first row holds the held-out data's
own statistics and perplexity, `data_row`: the reference point, a black star in the plot),
frontier_unigram_entropy.png and frontier_nfe.png; `python -m discrete_diffusion.main
--mode=eval` runs it after the likelihood (when config.eval.frontier).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from discrete_diffusion import progress, sampling

# Sampler presets: the name a frontier shows -> fields set on top of config.sampler.
PRESETS: dict[str, dict[str, Any]] = {
    "ancestral": {"name": "ancestral"},
    "psi": {"name": "psi", "kappa_schedule": "phases"},  # Duo II: kappa_middle < 1 mid-way
    "remdm": {"name": "psi", "kappa_schedule": "remdm_cap"},
    "first_hitting": {"name": "first_hitting"},
    "informed_pc": {"name": "informed_pc"},
    # the exact corrector: one site per sweep, Metropolis-Hastings-corrected confidence rule
    "informed_pc_mh": {"name": "informed_pc", "mh_correct": True, "sites_per_sweep": 1},
    "score_euler": {"name": "score_euler"},
    "audm": {"name": "audm"},
    "reaudm": {"name": "reaudm"},
}


@dataclasses.dataclass(frozen=True)
class Point:
    """One setting of the sweep. `sweep` names the axis it belongs to ('steps', 'temperature',
    'top_p'); the others hold their reference values."""

    sampler: str
    sweep: str
    num_steps: int
    temperature: float
    top_p: float
    categorical: str
    tokens_per_step: int = 1

    def settings(self) -> tuple:
        """What the samples depend on (the sweep label aside): points sharing it share samples."""
        return dataclasses.astuple(dataclasses.replace(self, sweep=""))

    def sampler_config(self, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """`base` (a config.sampler) with this point's preset and settings, without the fields of
        base that the preset's sampler does not read."""
        from discrete_diffusion import sampling

        name = PRESETS[self.sampler]["name"]
        cfg = ml_collections.ConfigDict(sampling.only_fields_of(name, base.to_dict()))
        for k, v in {**PRESETS[self.sampler], "num_steps": self.num_steps,
                     "temperature": self.temperature, "top_p": self.top_p,
                     "categorical": self.categorical}.items():
            cfg[k] = v
        if self.sampler == "first_hitting":
            cfg["tokens_per_step"] = self.tokens_per_step
        return cfg


def _floats(value: Any, field: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if not out:
        raise ValueError(f"config.eval.{field} must not be empty")
    return out


def _auto_samplers(config: Any) -> tuple[str, ...]:
    """The process's default sweep (`sampling.SWEEP_SAMPLERS`; empty for an unknown process)."""
    return sampling.SWEEP_SAMPLERS.get(config.process.get("name", None), ())


def sampler_names(config: Any) -> tuple[str, ...]:
    """config.eval.samplers ('auto': `sampling.SWEEP_SAMPLERS` of the process; or comma-separated
    preset names)."""
    spec = config.eval.get("samplers", "auto")
    if spec == "auto":
        return _auto_samplers(config)
    names = tuple(s.strip() for s in str(spec).split(",") if s.strip())
    for n in names:
        if n not in PRESETS:
            raise ValueError(f"config.eval.samplers: {n!r} is not one of {['auto', *PRESETS]}")
    return names


def grid(config: Any, seq_len: int) -> list[Point]:
    """The points of the sweep (see the module doc), without duplicates, in a stable order."""
    ev = config.eval
    ref_steps = int(config.sampler.num_steps)
    steps = tuple(int(s) for s in _floats(ev.get("steps", (ref_steps,)), "steps"))
    temps = _floats(ev.get("temperatures", (1.0,)), "temperatures")
    top_ps = _floats(ev.get("top_ps", (1.0,)), "top_ps")
    cats = tuple(ev.get("categoricals", ("exact",)))
    if any(s < 1 for s in steps):
        raise ValueError(f"config.eval.steps={steps} must be positive integers")
    if any(t <= 0 for t in temps) or any(not 0 < p <= 1 for p in top_ps):
        raise ValueError(f"config.eval.temperatures={temps} must be > 0 and top_ps={top_ps} in (0, 1]")
    points: list[Point] = []
    for name in sampler_names(config):
        for cat in cats:
            settings = [("steps", s, 1.0, 1.0) for s in steps]
            settings += [("temperature", ref_steps, t, 1.0) for t in temps]
            settings += [("top_p", ref_steps, 1.0, p) for p in top_ps]
            for sweep, s, t, p in settings:
                if name == "first_hitting":  # L calls of one token, or the parallel variant
                    tps = max(1, math.ceil(seq_len / s)) if sweep == "steps" else 1
                    point = Point(name, sweep, seq_len, t, p, cat, tps)
                elif PRESETS[name]["name"] == "informed_pc":  # s network calls, correctors included
                    point = Point(name, sweep, informed_pc_steps(config, name, s), t, p, cat)
                else:
                    point = Point(name, sweep, s, t, p, cat)
                if point not in points:
                    points.append(point)
    return points


def informed_pc_steps(config: Any, preset: str, budget: int) -> int:
    """Predictor steps of an informed-PC preset within `budget` network calls (equal NFE)."""
    from discrete_diffusion.sampling import informed_pc, only_fields_of

    fields = {**informed_pc.DEFAULTS, **only_fields_of("informed_pc", config.sampler.to_dict()),
              **PRESETS[preset]}
    return informed_pc.steps_for_budget(budget, int(fields["corrector_steps"]), bool(fields["mh_correct"]))


JUDGES = ("auto", "smollm2", "exact", "none")  # or 'ar:WORKDIR'


def validate_eval(config: Any) -> None:
    """Checks config.eval (errors name the field and the allowed values)."""
    ev = config.eval
    judge = ev.get("judge", "auto")
    if not (judge in JUDGES or (isinstance(judge, str) and judge.startswith("ar:") and len(judge) > 3)):
        raise ValueError(f"config.eval.judge={judge!r} is not one of {[*JUDGES, 'ar:WORKDIR']}")
    n = ev.get("num_samples", 32)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"config.eval.num_samples={n!r} must be an int >= 1")
    for c in ev.get("categoricals", ("exact",)):
        if c not in ("exact", "float32"):
            raise ValueError(f"config.eval.categoricals: {c!r} is not one of ['exact', 'float32']")
    if _auto_samplers(config):
        grid(config, seq_len=1)


# judge(tokens [N, L] int, texts) -> {'gen_ppl': float, ...}; stats(tokens, texts) -> {...}
Judge = Callable[[np.ndarray, list[str]], dict[str, float]]
Stats = Callable[[np.ndarray, list[str]], dict[str, float]]


def run_sweep(
    generate: Callable[[Any, jax.Array, int], tuple[np.ndarray, int]],
    decode: Callable[[np.ndarray], str],
    points: Sequence[Point],
    base_sampler: ml_collections.ConfigDict,
    num_samples: int,
    judge: Judge | None,
    stats: Stats,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One row per point: its settings, NFE, seconds, the judge's and the text statistics.

    `generate(sampler_config, key, num_samples) -> (tokens [N, L], nfe)`; the same key for every
    point (common random numbers: differences between points are not sampling noise in the key).
    Points of different sweeps with the same settings share one generation.
    """
    rows = []
    done: dict[tuple, dict[str, Any]] = {}
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    for i, point in enumerate(points):
        if point.settings() not in done:
            start = time.perf_counter()
            tokens, nfe = generate(point.sampler_config(base_sampler), key, num_samples)
            seconds = time.perf_counter() - start
            tokens = np.asarray(tokens)
            texts = [decode(row) for row in tokens]
            result = {"nfe": int(nfe), "seconds": seconds, "num_samples": int(tokens.shape[0])}
            result.update(stats(tokens, texts))
            if judge is not None:
                result.update(judge(tokens, texts))
            result["example"] = texts[0][:200]
            done[point.settings()] = result
        row = {**dataclasses.asdict(point), **done[point.settings()]}
        rows.append(row)
        seconds = row["seconds"]
        shown = ", ".join(f"{k}={_fmt(row[k])}" for k in ("gen_ppl", "unigram_entropy",
                                                          "real_word_fraction", "nfe") if k in row)
        eta = progress.line("frontier", i + 1, len(points), time.perf_counter() - t0, unit="point")
        log(f"[frontier {i + 1}/{len(points)}] {point.sampler} {point.sweep}: steps={point.num_steps} "
            f"T={point.temperature:g} top_p={point.top_p:g} {point.categorical}: {shown} "
            f"({seconds:.1f} s); {eta}")
    return rows


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_rows(rows: list[dict[str, Any]], out_dir: str, name: str = "frontier") -> tuple[str, str]:
    """workdir/eval/<name>.csv and .json (one object per row)."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path, json_path = (os.path.join(out_dir, f"{name}.{ext}") for ext in ("csv", "json"))
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(json_path, "w") as f:
        json.dump(rows, f, indent=1)
    return csv_path, json_path


def plot(rows: list[dict[str, Any]], out_dir: str, title: str = "", name: str = "frontier") -> list[str]:
    """Two PNGs: y = generative perplexity (log scale) against x = mean unigram entropy (every
    sweep; each point labelled with its swept value: NFE, temperature or top_p), and against NFE
    (log scale; the steps sweeps). One colour per sampler, one marker per sweep, float32 points
    hollow on dashed lines, error bars +- 1 SE ('gen_ppl_se') where the judge gives one. Without
    a judge (no 'gen_ppl'), entropy against NFE only."""
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(out_dir, exist_ok=True)
    import matplotlib.pyplot as plt

    has_ppl = any("gen_ppl" in r for r in rows)
    entropy = ("unigram_entropy", "mean unigram entropy (nats)")
    y_key, y_label = ("gen_ppl", "generative perplexity") if has_ppl else entropy
    samplers = list(dict.fromkeys(r["sampler"] for r in rows if r["sampler"] != "data"))
    colours = {s: plt.get_cmap("tab10")(i) for i, s in enumerate(samplers)}
    markers = {"steps": "o", "temperature": "s", "top_p": "^"}
    paths = []
    axes_spec = [(*entropy, False), ("nfe", "network calls (NFE)", True)]
    if not has_ppl:
        axes_spec = axes_spec[1:]
    swept = {"steps": "num_steps", "temperature": "temperature", "top_p": "top_p"}
    for x_key, x_label, log_x in axes_spec:
        fig, ax = plt.subplots(figsize=(7.2, 5.4))
        for s in samplers:
            for sweep, marker in markers.items():
                if x_key == "nfe" and sweep != "steps":  # the other sweeps sit at one NFE
                    continue
                for cat in ("exact", "float32"):
                    pts = [r for r in rows if r["sampler"] == s and r["sweep"] == sweep
                           and r["categorical"] == cat and _finite(r.get(y_key))
                           and _finite(r.get(x_key))]
                    if not pts:
                        continue
                    pts.sort(key=lambda r: (r[swept[sweep]], r["nfe"]))  # along the swept value
                    face = colours[s] if cat == "exact" else "none"
                    xs, ys = [r[x_key] for r in pts], [r[y_key] for r in pts]
                    ax.plot(xs, ys, marker=marker, color=colours[s], markerfacecolor=face,
                            linestyle="-" if cat == "exact" else "--", alpha=0.8,
                            label=f"{s}, {sweep}" + ("" if cat == "exact" else ", float32"))
                    se = [r.get(f"{y_key}_se", math.nan) for r in pts]
                    if any(_finite(e) for e in se):  # +- 1 SE of the judge's NLL (delta method)
                        ax.errorbar(xs, ys, yerr=[e if _finite(e) else 0.0 for e in se],
                                    fmt="none", ecolor=colours[s], alpha=0.6, capsize=2)
                    if x_key != "nfe":  # label each point with its swept value
                        for r, x, y in zip(pts, xs, ys, strict=True):
                            value = r["nfe"] if sweep == "steps" else r[swept[sweep]]
                            ax.annotate(f"{value:g}", (x, y), fontsize=6, color=colours[s],
                                        xytext=(3, 3), textcoords="offset points")
        for r in rows:  # held-out data: the reference point (entropy plot only)
            if r["sampler"] == "data" and x_key != "nfe" and _finite(r.get(y_key)) and _finite(
                    r.get(x_key)):
                ax.plot([r[x_key]], [r[y_key]], marker="*", markersize=14, color="black",
                        linestyle="none", label="held-out data")
        if ax.lines:  # infinite perplexities (impossible samples under an exact judge) are left out
            if log_x:
                ax.set_xscale("log")
            if y_key == "gen_ppl":
                ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        path = os.path.join(out_dir, f"{name}_{x_key}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- on a trained model


def judge_name(config: Any, data: Any) -> str:
    """config.eval.judge with 'auto' resolved: 'exact' for the synthetic Markov corpus, 'none' for
    images (class labels), 'smollm2' for text."""
    spec = config.eval.get("judge", "auto")
    if spec != "auto":
        return spec
    if "chain" in data.info:
        return "exact"
    return "none" if data.num_labels else "smollm2"


def make_judge(config: Any, data: Any) -> Judge | None:
    """The judge of config.eval.judge as `(tokens [N, L], texts) -> {'gen_ppl', ...}`, or None."""
    name = judge_name(config, data)
    if name == "none":
        return None
    if name == "exact":
        if "chain" not in data.info:
            raise ValueError("config.eval.judge='exact' needs the synthetic corpus (config.data.name)")
        from discrete_diffusion.evaluation import exact_judge

        chain = data.info["chain"]

        def exact(tokens: np.ndarray, texts: list[str]) -> dict[str, float]:
            r = exact_judge.markov_judge(chain, tokens)
            nll = exact_judge.sequence_nll(chain, tokens)  # [N]
            possible = nll[np.isfinite(nll)]
            # frac_impossible > 0 makes gen_ppl infinite; gen_ppl_possible leaves those samples out
            ppl_possible = math.exp(possible.mean() / tokens.shape[1]) if possible.size else math.nan
            # gap_se is the SE of the mean NLL per token (equal lengths): delta method for ppl
            return {"gen_ppl": r["gen_ppl"], "gen_ppl_se": r["gen_ppl"] * r["gap_se"],
                    "gen_ppl_possible": ppl_possible,
                    "judge_nll_per_token": r["nll_per_token"], "true_ppl": r["true_ppl"],
                    "gap": r["gap"], "gap_se": r["gap_se"], "frac_impossible": r["frac_impossible"]}

        return exact
    from discrete_diffusion import training
    from discrete_diffusion.evaluation import judge as judge_lib

    if name == "smollm2":
        model = judge_lib.load_smollm2_judge()
    else:  # 'ar:WORKDIR'
        ar_workdir = name[len("ar:"):]
        model = judge_lib.load_ar_judge(training.load_config(ar_workdir), ar_workdir)

    def text_judge(tokens: np.ndarray, texts: list[str]) -> dict[str, float]:
        r = judge_lib.generative_perplexity(model, texts)
        return {"gen_ppl": r["ppl"], "gen_ppl_se": r["ppl_se"],
                "judge_nll_per_token": r["nll_per_token"],
                "judge_nll_per_token_se": r["nll_per_token_se"],
                "judge_tokens": float(np.sum(r["num_tokens"])), "judge_empty": float(r["num_empty"])}

    return text_judge


def make_stats(data: Any) -> Stats:
    """Text statistics of samples on the model's own tokens (`text_stats.summarize`, cut at EOS),
    and for text corpora the real-word fraction of the decoded texts (`text_stats.real_words`)."""
    from discrete_diffusion.evaluation import text_stats

    eos = data.tokenizer.eos_id
    vocabulary = data.info.get("word_vocabulary")  # text corpora: the training split's words

    def stats(tokens: np.ndarray, texts: list[str]) -> dict[str, float]:
        s = text_stats.summarize(tokens, eos_id=eos)
        out = {k: s[k] for k in ("unigram_entropy", "unigram_entropy_se", "distinct_2",
                                 "corpus_distinct_2", "repetition_4", "mean_length")}
        if vocabulary is not None:
            out.update(text_stats.real_words(texts, vocabulary()))
        return out

    return stats


def data_row(data: Any, num_samples: int, judge: Judge | None, stats: Stats) -> dict[str, Any]:
    """The reference point: the same statistics and judge on `num_samples` held-out sequences
    (sampler 'data'; NFE 0). A sampler's point can only be judged against it: a perplexity below
    the data's at a lower entropy is a sign of low-temperature sampling, not of quality."""
    rows = []
    for batch in data.eval_batches():
        valid = batch.get("valid", np.ones(len(batch["tokens"]), bool))
        rows.extend(np.asarray(batch["tokens"])[valid])
        if len(rows) >= num_samples:
            break
    tokens = np.stack(rows[:num_samples])
    texts = [data.tokenizer.decode(row.tolist()) for row in tokens]
    row: dict[str, Any] = {"sampler": "data", "sweep": "data", "nfe": 0,
                           "num_samples": int(tokens.shape[0])}
    row.update(stats(tokens, texts))
    if judge is not None:
        row.update(judge(tokens, texts))
    row["example"] = texts[0][:200]
    return row


def frontier_of_state(config: Any, data: Any, trainer: Any, params: Any, out_dir: str,
                      judge: Judge | None | str = "config",
                      log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Runs the sweep of `config.eval` on `params` of a trained method (`trainer.generate`) and writes
    out_dir/frontier.{csv,json} and the plots; returns the rows. `judge`: 'config' builds the
    judge of config.eval.judge (`make_judge`); or pass one already built (or None)."""
    from discrete_diffusion import sharding

    seq_len = int(data.seq_len)
    points = grid(config, seq_len)

    def generate(sampler: Any, key: jax.Array, n: int) -> tuple[np.ndarray, int]:
        res = trainer.generate(params, key, n, seq_len, sampler=sampler)
        return sharding.to_host(res.tokens), res.nfe

    def decode(row: np.ndarray) -> str:
        return data.tokenizer.decode(row.tolist())

    judge = make_judge(config, data) if judge == "config" else judge
    stats, n = make_stats(data), int(config.eval.num_samples)
    reference = data_row(data, n, judge, stats)
    log("[frontier] held-out data: " + ", ".join(
        f"{k}={_fmt(reference[k])}" for k in ("gen_ppl", "unigram_entropy", "real_word_fraction")
        if k in reference))
    rows = [reference] + run_sweep(generate, decode, points, config.sampler, n, judge, stats,
                                   int(config.eval.get("seed", 0)), log)
    if jax.process_index() == 0:
        write_rows(rows, out_dir)
        title = (f"{config.process.name} diffusion, {data.info.get('name', config.data.name)}, "
                 f"judge {judge_name(config, data)}")
        plot(rows, out_dir, title)
    return rows


def main(argv: Sequence[str]) -> None:
    from absl import flags, logging

    from discrete_diffusion import training

    del argv
    FLAGS = flags.FLAGS
    if not FLAGS["verbosity"].present:  # orbax logs every restore at INFO (as main.py silences it)
        logging.set_verbosity(logging.WARNING)
    config = FLAGS.config
    if config is None:
        config = training.load_config(FLAGS.workdir)
    config, data, trainer, state = training.load_state(config, FLAGS.workdir)
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.workdir, "eval")
    frontier_of_state(config, data, trainer, state.ema_params, out_dir)
    print(f"wrote {out_dir}/frontier.csv, frontier.json, frontier_unigram_entropy.png, "
          "frontier_nfe.png")


if __name__ == "__main__":
    from absl import app, flags

    from discrete_diffusion import config_fields

    config_fields.define_config_flag("config", "Training config (default: workdir/config.json).",
                                     lock_config=False)
    flags.DEFINE_string("workdir", None, "A training run's --workdir.")
    flags.DEFINE_string("out_dir", None, "Where the files go (default: workdir/eval).")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
