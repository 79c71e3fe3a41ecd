"""VADD against MDLM on the discretised 2-D checkerboard at equal wall-clock training time: the
Jensen-Shannon divergence (nats) of 1-step and 5-step samples from the exact law, and a picture.

    JAX_PLATFORMS=cpu python benchmarks/vadd_checkerboard.py --workdir=/tmp/vadd_cb \
        [--minutes 3] [--samples 20000] [--steps 1 5] [--num-steps N] [--vadd-only] \
        [--kl-warmup STEPS] [--kl-free-bits NATS]

Trains configs/checkerboard_mdlm.py and configs/checkerboard_vadd.py in-process
(`training.train_and_evaluate`), each stopped after --minutes of training
(config.training.max_train_minutes), then samples --samples pairs with the EMA parameters and
the ancestral sampler at each number of steps (VADD: a fresh z per step, and one z per
trajectory), and prints JS(samples, law) beside the JS floor of that many exact draws, and the
held-out bounds (nats/token; entropy 3.119): MDLM's NELBO; VADD's DELBO, its importance-weighted
version and the NELBO of its sampler (methods/vadd.py (3), the one comparable with MDLM's). One-step
MDLM samples the two coordinates independently: its JS tends to 3/4 log(4/3) = 0.216 (uniform over
the grid). Writes <workdir>/vadd_checkerboard.json and <workdir>/vadd_checkerboard.png.
`--num-steps N` trains N optimizer steps instead (then --minutes is only a cap), `--vadd-only`
skips MDLM, `--kl-warmup` / `--kl-free-bits` override config.training.kl_warmup_steps /
kl_free_bits (latent collapse, README); "latent_alive_step" is the first logged step whose delbo_kl
exceeds 0.01 nats/token (None: the latent stayed collapsed).
(The paper's JS numbers, 1.395 for MDLM and 0.062 for VADD at 1 step, exceed log 2, the largest
JS in nats, so they are on another scale or estimator; compare the ratio, not the values.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the package and configs/ from this checkout
    sys.path.insert(0, ROOT)


def _config(name: str, minutes: float, seed: int, args: argparse.Namespace | None = None):
    sys.path.insert(0, ROOT)
    config = importlib.import_module(f"configs.{name}").get_config()
    config.training.max_train_minutes = minutes
    config.training.num_steps = 1_000_000
    config.training.seed = seed
    if args is not None:
        if args.num_steps:
            config.training.num_steps = args.num_steps
        if args.kl_warmup is not None:
            config.training.kl_warmup_steps = args.kl_warmup
        if args.kl_free_bits is not None:
            config.training.kl_free_bits = args.kl_free_bits
    config.training.sample_every = 0
    config.training.checkpoint_every = 1_000_000
    config.training.eval_every = 1_000_000
    return config


def _bounds(method, params, seed: int, n: int = 4096, num_t: int = 16, s: int = 16) -> dict:
    """Held-out bounds (nats/token, on n fresh exact draws): MDLM's NELBO; for VADD the DELBO,
    its importance-weighted version (s latents) and the sampler's NELBO (3) (s latents)."""
    from discrete_diffusion.data import checkerboard

    toks = jax.numpy.asarray(checkerboard.sample(np.random.default_rng([seed, 7]), n))
    batch, key = {"tokens": toks}, jax.random.key(seed)
    fns = {"nelbo_nats": lambda p: method.nelbo_samples(p, batch, key, num_t)}
    if hasattr(method, "marginal_nelbo_samples"):
        fns = {"delbo_nats": lambda p: method.delbo_samples(p, batch, key, num_t),
               "iwae_delbo_nats": lambda p: method.iwae_samples(p, batch, key, num_t, s),
               "sampler_nelbo_nats": lambda p: method.marginal_nelbo_samples(p, batch, key, num_t, s)}
    out = {k: float(np.mean(np.asarray(jax.jit(f)(params)))) / 2.0 for k, f in fns.items()}
    out["entropy_nats"] = float(np.log(512.0)) / 2.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-steps", type=int, default=0)
    ap.add_argument("--vadd-only", action="store_true")
    ap.add_argument("--kl-warmup", type=int, default=None)
    ap.add_argument("--kl-free-bits", type=float, default=None)
    args = ap.parse_args()
    from discrete_diffusion import methods, training
    from discrete_diffusion.data import checkerboard

    law = checkerboard.law()
    floor = checkerboard.js_divergence(
        checkerboard.histogram(checkerboard.sample(np.random.default_rng(1), args.samples)), law)
    results: dict = {"js_floor": floor, "samples": args.samples, "minutes": args.minutes}
    pictures: dict[str, np.ndarray] = {}
    names = ("checkerboard_vadd",) if args.vadd_only else ("checkerboard_mdlm", "checkerboard_vadd")
    for name in names:
        config = _config(name, args.minutes, args.seed, args)
        state = training.train_and_evaluate(config, os.path.join(args.workdir, name))
        with open(os.path.join(args.workdir, name, "metrics.jsonl")) as f:
            rows = [json.loads(x) for x in f]
        train = [r for r in rows if r["kind"] == "train"]
        evals = [r for r in rows if r["kind"] == "eval"]
        results[name] = {"train_steps": int(state.step),
                         "eval_nelbo": evals[-1]["eval_nelbo"] if evals else None,
                         "last_train_nelbo": train[-1].get("nelbo") if train else None}
        if name.endswith("vadd"):
            alive = [r["step"] for r in train if r.get("delbo_kl", 0.0) > 0.01]
            results[name]["latent_alive_step"] = alive[0] if alive else None
            results[name]["last_delbo_kl"] = train[-1].get("delbo_kl") if train else None
        config.process.num_classes = checkerboard.BINS  # the trainer reads it from the data
        method = methods.get(config, checkerboard.BINS)
        results[name].update(_bounds(method, state.ema_params, args.seed))
        print(name, {k: round(v, 4) for k, v in results[name].items() if k.endswith("nats")})
        modes = ("per_step", "per_trajectory") if name.endswith("vadd") else (None,)
        for mode in modes:
            for steps in args.steps:
                sc = config.sampler.copy_and_resolve_references()
                sc.num_steps = steps
                if mode is not None:
                    sc.latent = mode
                toks = method.generate(state.ema_params, jax.random.key(100 + steps),
                                       args.samples, 2, sc).tokens
                hist = checkerboard.histogram(np.asarray(toks))
                tag = f"{name}{'' if mode is None else '_' + mode}_{steps}step"
                results[tag] = checkerboard.js_divergence(hist, law)
                pictures[tag] = hist
                print(f"{tag}: JS = {results[tag]:.4f} nats (floor {floor:.4f})", flush=True)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "vadd_checkerboard.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = ["law", *pictures]
    fig, axes = plt.subplots(1, len(tags), figsize=(2.4 * len(tags), 3.0))
    for ax, tag in zip(axes, tags, strict=True):
        img = law if tag == "law" else pictures[tag]
        ax.imshow(img.T, origin="lower", cmap="magma")
        title = tag.replace("checkerboard_", "").replace("_", " ")
        if tag != "law":
            title += f"\nJS {results[tag]:.3f}"
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(args.workdir, "vadd_checkerboard.png"), dpi=120)


if __name__ == "__main__":
    main()
