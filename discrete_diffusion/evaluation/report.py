"""Everything `python -m discrete_diffusion.main --mode=eval` reports on a trained workdir.

    1. likelihood: the held-out NELBO with `config.training.eval_num_t` stratified times per
       sequence (bits per token/character, perplexity, standard errors; the exact NLL for the
       autoregressive baseline); for images, bits per dimension is the same number per pixel;
    2. samples of the config's own sampler: generative perplexity under the judge of
       `config.eval.judge` (SmolLM2-135M for text, the true generator for the synthetic corpus),
       unigram entropy, distinct-2 and 4-gram repetition; for images, FD-MLP against held-out
       images (a Fréchet distance in the features of an in-project classifier, not an Inception
       FID) with the real-vs-real floor;
    3. the frontier sweep of `evaluation.frontier` only when asked (`config.eval.frontier=True`;
       default False: 36 points scored by the judge take minutes to hours) and the method
       samples with the diffusion samplers (`method.samples_with_config_sampler`).

Writes workdir/eval/summary.json (1 and 2), workdir/eval/samples.txt, and the frontier files; the
likelihood also goes to metrics.jsonl and TensorBoard like the training-time evaluations.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from discrete_diffusion import sharding, training
from discrete_diffusion.data import bundle as data_lib
from discrete_diffusion.data import words
from discrete_diffusion.evaluation import frontier
from discrete_diffusion.metrics import MetricWriter


def _image_distance(config: Any, data: Any, samples: np.ndarray, cache_dir: str) -> dict[str, float]:
    """FD-MLP of samples to as many held-out images, and of two halves of held-out images."""
    from discrete_diffusion.evaluation import image_metrics

    real = np.concatenate([b["tokens"][b.get("valid", np.ones(len(b["tokens"]), bool))]
                           for b in data.eval_batches()])
    clf = image_metrics.load_classifier(str(config.data.name), cache_dir)
    n = min(len(samples), len(real) // 2)
    return {
        "fd_mlp": image_metrics.frechet_feature_distance(clf, samples[:n], real[:n]),
        "fd_mlp_real_floor": image_metrics.frechet_feature_distance(clf, real[:n], real[n:2 * n]),
        "fd_mlp_classifier_accuracy": float(clf.accuracy),
        "fd_mlp_num_images": float(n),
    }


def evaluate_workdir(config: Any, workdir: str) -> dict[str, Any]:
    """Runs 1-3 on the latest checkpoint of `workdir` (EMA parameters); returns the summary."""
    config, data, trainer, state = training.load_state(config, workdir)
    params, step = state.ema_params, int(state.step)
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)

    # 1. likelihood
    ev = trainer.evaluate(params, data.eval_batches(int(config.training.eval_batches)),
                      int(config.training.seed))
    ev.update(data_lib.per_character(ev, data.info))  # text: bits per character
    writer = MetricWriter(workdir)
    writer.write(step, ev, prefix="eval")
    writer.close()
    summary: dict[str, Any] = {"step": step, **ev}

    # 2. samples of the config's sampler
    n = int(config.eval.num_samples)
    key = jax.random.PRNGKey(int(config.eval.get("seed", 0)))
    res = trainer.generate(params, key, n, int(data.seq_len))
    tokens = sharding.to_host(res.tokens)
    texts = [data.tokenizer.decode(row.tolist()) for row in tokens]
    summary.update({"sampler": config.sampler.name, "nfe": res.nfe,
                    "judge": frontier.judge_name(config, data)})
    summary.update(frontier.make_stats(data)(tokens, texts))
    if "real_word_fraction" in summary:  # the reference: held-out text decoded as samples are
        summary["heldout_real_word_fraction"] = words.heldout_fraction(
            data, data.info["word_vocabulary"]())
    judge = frontier.make_judge(config, data)
    if judge is not None:
        summary.update(judge(tokens, texts))
    if data.num_labels and config.data.name in ("digits", "mnist"):
        summary.update(_image_distance(config, data, tokens, out_dir))
    if jax.process_index() == 0:
        with open(os.path.join(out_dir, "samples.txt"), "w") as f:
            f.write("\n\n".join(f"--- sample {i} ---\n{t}" for i, t in enumerate(texts)) + "\n")
        with open(os.path.join(out_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print("[eval] " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in summary.items()), flush=True)

    # 3. the frontier, only when asked (36 points scored by a judge take minutes to hours)
    if not config.eval.get("frontier", False):
        print("[eval] frontier not swept (config.eval.frontier=False); pass "
              "--config.eval.frontier=True, or run python -m discrete_diffusion.evaluation.frontier",
              flush=True)
    else:
        if trainer.method.samples_with_config_sampler:
            frontier.frontier_of_state(config, data, trainer, params, out_dir, judge)
        else:
            print(f"[eval] no frontier: method {trainer.method.name!r} does not sample with the "
                  "diffusion samplers that the frontier sweeps", flush=True)
    return summary
