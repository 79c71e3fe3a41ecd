"""Reference levels of the SmolLM2-135M generative-perplexity judge (about a minute on 2 CPU cores).

    python benchmarks/judge_reference.py [--play macbeth] [--start "### SCENE IV"] [--chars 1000]
        [--ar_workdir DIR [--ar_config configs/shakespeare_ar.py]]

Prints the judge's perplexity and token count on ~`chars` characters (whole lines) of a
held-out play of the Shakespeare corpus (configs' `heldout_plays`: macbeth, the-tempest),
beginning at the first occurrence of `start`, and on the same words shuffled; and the same for a
short modern English passage. Generated samples are compared with these levels. With
`--ar_workdir`, the in-project autoregressive model trained there (`--ar_config`) judges the
Shakespeare texts too (`judge.load_ar_judge`).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import sys
import time

from discrete_diffusion.data import shakespeare
from discrete_diffusion.evaluation import judge as judges

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGLISH = (
    "The old house stood at the end of a quiet street, behind a garden full of roses. "
    "Every morning the children walked past it on their way to school and wondered who lived there. "
    "One day the front door was open, and a kind old woman invited them in for tea."
)


def passage(play: str, start: str, chars: int) -> str:
    """Whole lines of `play` from the first line holding `start`, until >= `chars` characters."""
    if play not in shakespeare.DEFAULT_HELDOUT_PLAYS:
        raise ValueError(f"{play!r} is not a held-out play {shakespeare.DEFAULT_HELDOUT_PLAYS}")
    text = shakespeare.load_plays()[play]
    begin = text.rfind("\n", 0, text.index(start)) + 1
    end = text.find("\n", begin + chars)
    return text[begin : end if end >= 0 else len(text)]


def shuffled(text: str, seed: int = 0) -> str:
    words = text.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def load_config(path: str):
    """`get_config()` of a config file (configs import each other as `configs.*`)."""
    sys.path.insert(0, ROOT)
    spec = importlib.util.spec_from_file_location("judge_reference_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def report(judge: judges.ARJudge, texts: dict[str, str]) -> None:
    t0 = time.perf_counter()
    res = judges.generative_perplexity(judge, list(texts.values()))
    print(f"scored {len(texts)} texts in {time.perf_counter() - t0:.1f} s")
    print(f"{'text':<32} {'chars':>6} {'tokens':>7} {'ppl':>9}")
    for (name, text), nll, n in zip(texts.items(), res["nll"], res["num_tokens"], strict=True):
        print(f"{name:<32} {len(text):>6} {n:>7} {math.exp(nll / n):>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--play", default="macbeth")
    parser.add_argument("--start", default="### SCENE IV")
    parser.add_argument("--chars", type=int, default=1000)
    parser.add_argument("--ar_workdir", default=None, help="a trained in-project AR model")
    parser.add_argument("--ar_config", default=os.path.join(ROOT, "configs", "shakespeare_ar.py"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    judge = judges.load_smollm2_judge()
    print(f"loaded SmolLM2-135M-Instruct (Q4_1 GGUF -> float32) in {time.perf_counter() - t0:.1f} s")
    held_out = passage(args.play, args.start, args.chars)
    print(f"--- {args.play}, {len(held_out)} characters from {args.start!r}:\n{held_out}\n---")
    plays = {f"{args.play} (held out)": held_out, f"{args.play}, words shuffled": shuffled(held_out)}
    english = {"modern English": ENGLISH, "modern English, words shuffled": shuffled(ENGLISH)}
    report(judge, {**plays, **english})
    if args.ar_workdir:
        print(f"\nin-project AR judge from {args.ar_workdir} ({args.ar_config}):")
        report(judges.load_ar_judge(load_config(args.ar_config), args.ar_workdir), plays)


if __name__ == "__main__":
    main()
