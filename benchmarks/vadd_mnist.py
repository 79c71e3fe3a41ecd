"""VADD against MDLM on binarised MNIST at equal training time: held-out bits per dimension
(every bound of methods/vadd.py, with standard errors) and sample grids at 1, 4 and 16 steps.

    JAX_PLATFORMS=cpu python benchmarks/vadd_mnist.py --workdir=/tmp/vadd_mnist --minutes 30 \
        --eval-images 128

Trains configs/mnist_vadd.py (method 'vadd') and its MDLM baseline (the same config with
method.name='diffusion', model.latent_dim=0) *at the same time*, as two processes of this script
(`--train-one`), each stopped after --minutes of training (config.training.max_train_minutes,
counted after a first, compiling step; each arm waits for the other's compile to end, so the two
timed windows are the same wall-clock minutes), so both see the same machine load; then, in this
process, on --eval-images held-out images with --num-t stratified times each (EMA parameters):

    MDLM: eval_nelbo (its NELBO);
    VADD: eval_marginal_nelbo (the per_step sampler's NELBO, = its eval_nelbo), eval_trajectory_nelbo
          (the per_trajectory sampler's), eval_delbo and eval_iw_delbo (--latents latents; not a
          bound of either sampler, methods/vadd.py "Which bound"),

in bits per dimension (pixel) with their standard errors (data + Monte Carlo), and draws 16 samples
per (model, latent mode, steps) with the ancestral sampler at each of --steps, written as 4x4
image grids to <workdir>/vadd_mnist_samples.png (rows: MDLM, VADD per_step, VADD per_trajectory;
columns: steps) and <workdir>/grids/<tag>.png, figures to <workdir>/vadd_mnist.json (with each
arm's steps, compile / timed seconds, median steps/s and last logged train metrics, for VADD
delbo_kl and kl_active_dims).

`--small` (the default; `--no-small` keeps configs/mnist_vadd.py's network) shrinks both networks
for a shared CPU: 2 layers, d_model 64, 2 heads, cond_dim 32, a 8-dim z, a one-layer recognition
model, batch 16, EMA decay 0.98 and a 20-step learning-rate warm-up (a run of a few hundred
steps), KL warm-up --kl-warmup steps, free bits --kl-free-bits (default configs/mnist_vadd.py's
0.1 nats per latent dimension) (configs/mnist_vadd.py's 4-layer d=128 network at batch 32 needs
~9 GB of host memory on CPU). Both arms take configs/mnist_vadd.py's config.model.pos_embedding
('rotary+learned': learned absolute positions beside rotary) unless --pos-embedding says
otherwise.

Where the time goes (measured on the shared 2-core CPU): one train step of the --small VADD
is ~2.6 s alone (MDLM ~2.2 s; ~20-30 s to compile), ~3-5 s with both arms at once, nearly all of
it in the 784 x 784 self-attention of the 2 + 1 layers (one layer's forward attention at batch
16 takes ~0.3 s; XLA's and the blockwise implementation alike): there is no evaluation,
sampling or checkpointing inside the timed loop (eval_every = sample_every = 0), so the steps a
run gets are set by the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np

ARMS = ("vadd", "mdlm")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the package and configs/ from this checkout
    sys.path.insert(0, ROOT)


def make_config(name: str, args: argparse.Namespace):
    """configs/mnist_vadd.py for 'vadd', its MDLM baseline for 'mdlm', set for a timed run."""
    c = importlib.import_module("configs.mnist_vadd").get_config()
    if args.small:
        c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.cond_dim = 2, 64, 2, 32
        c.model.latent_dim = 8
        c.method.encoder_layers = 1
        c.training.batch_size = 16
        c.training.ema_decay = 0.98
        c.training.warmup_steps = 20  # a few hundred steps in all: not 100 of them at a low lr
    if args.pos_embedding is not None:
        c.model.pos_embedding = args.pos_embedding
    c.training.kl_warmup_steps = args.kl_warmup
    if args.kl_free_bits is not None:
        c.training.kl_free_bits = args.kl_free_bits
    c.training.max_train_minutes = args.minutes
    c.training.num_steps = 1_000_000
    c.training.seed = args.seed
    c.training.log_every = 10
    c.training.eval_every = 0  # evaluated afterwards, in the main process
    c.training.sample_every = 0
    c.training.checkpoint_every = 1_000_000
    c.training.eval_num_t = args.num_t
    c.data.eval_batch_size = 16
    c.eval.iwae_samples = args.latents
    if name == "mdlm":
        c.method.name = "diffusion"
        c.model.latent_dim = 0
    return c


def train_one(name: str, args: argparse.Namespace) -> None:
    from discrete_diffusion import config_validation, training

    config = make_config(name, args)
    config_validation.validate(config)
    workdir = os.path.join(args.workdir, name)
    # one step first, so that compiling (minutes on a busy CPU) is not part of the timed training:
    # the second call reuses the cached trainer's compiled step and resumes from step 1
    warm = config.copy_and_resolve_references()
    warm.training.num_steps, warm.training.max_train_minutes = 1, 0.0
    t0 = time.time()
    training.train_and_evaluate(warm, workdir)
    t1 = time.time()
    # then wait for the other arm to finish compiling too, so that both timed windows are the
    # same minutes of wall-clock (an earlier run's VADD compiled 2.4 minutes longer than MDLM
    # and trained on a lighter machine after MDLM had stopped)
    open(os.path.join(args.workdir, f"{name}.compiled"), "w").close()
    while not all(os.path.exists(os.path.join(args.workdir, f"{n}.compiled")) for n in ARMS):
        time.sleep(0.5)
    t2 = time.time()
    state = training.train_and_evaluate(config, workdir)
    print(json.dumps({"name": name, "steps": int(state.step), "compile_s": t1 - t0,
                      "barrier_wait_s": t2 - t1, "train_s": time.time() - t2,
                      "load_average_at_end": os.getloadavg()}))


def arm_summary(workdir: str, name: str) -> dict:
    """The arm's timing line (the last JSON line of <workdir>/<name>.log) and, from its
    metrics.jsonl, the median steps/s of the timed window and the last logged train metrics."""
    out: dict = {}
    with open(os.path.join(workdir, f"{name}.log")) as f:
        for line in f:
            if line.startswith("{") and '"compile_s"' in line:
                out.update(json.loads(line))
    rows = []
    with open(os.path.join(workdir, name, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "train" and r["step"] > 1:
                rows.append(r)
    if rows:
        out["median_steps_per_s"] = float(np.median([r["steps_per_s"] for r in rows]))
        keys = ("step", "nelbo", "bpt", "delbo_ce", "delbo_kl", "kl_active_dims", "kl_weight")
        out["last_train_log"] = {k: rows[-1][k] for k in keys if k in rows[-1]}
    return out


def grid(tokens: np.ndarray, rows: int = 4) -> np.ndarray:
    """A [rows * 28 + gaps, cols * 28 + gaps] mosaic of binarised 28x28 images `[N, 784]`
    (pixels 0 / 1, gaps 0.5)."""
    n = len(tokens)
    cols = -(-n // rows)
    out = np.full((rows * 30 - 2, cols * 30 - 2), 0.5)
    for k, img in enumerate(tokens.reshape(n, 28, 28)):
        r, c = divmod(k, cols)
        out[r * 30:r * 30 + 28, c * 30:c * 30 + 28] = img
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--eval-images", type=int, default=64)
    ap.add_argument("--num-t", type=int, default=4)
    ap.add_argument("--latents", type=int, default=4)
    ap.add_argument("--kl-warmup", type=int, default=50)
    ap.add_argument("--kl-free-bits", type=float, default=None,
                    help="config.training.kl_free_bits (default: configs/mnist_vadd.py's 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--pos-embedding", default=None, choices=["rotary", "rotary+learned"],
                    help="config.model.pos_embedding of both arms (default: configs/mnist_vadd.py's "
                         "'rotary+learned'; 'rotary' is the README's first, position-blind run)")
    ap.add_argument("--skip-train", action="store_true", help="evaluate existing runs only")
    ap.add_argument("--train-one", choices=["vadd", "mdlm"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train_one:
        return train_one(args.train_one, args)

    results: dict = {"args": vars(args)}
    if not args.skip_train:  # both at once, so both see the same machine load
        os.makedirs(args.workdir, exist_ok=True)
        argv = [a for a in sys.argv[1:] if a != "--skip-train"]
        load0 = os.getloadavg()
        for n in ARMS:  # the compile barrier's flags of an earlier run
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(args.workdir, f"{n}.compiled"))
        with contextlib.ExitStack() as stack:
            logs = {n: stack.enter_context(open(os.path.join(args.workdir, f"{n}.log"), "w"))
                    for n in ARMS}
            procs = {n: subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv,
                                          "--train-one", n], stdout=log, stderr=subprocess.STDOUT)
                     for n, log in logs.items()}
            while any(p.poll() is None for p in procs.values()):
                failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
                if failed:  # the other arm would wait for it at the compile barrier
                    for p in procs.values():
                        if p.poll() is None:
                            p.terminate()
                    raise SystemExit(f"training {failed[0]} failed: see {args.workdir}/"
                                     f"{failed[0]}.log")
                time.sleep(2)
            for n, p in procs.items():
                if p.returncode != 0:
                    raise SystemExit(f"training {n} failed: see {args.workdir}/{n}.log")
        results["load_average_before_after"] = [load0, os.getloadavg()]

    import jax

    from discrete_diffusion import training

    panels: dict[str, np.ndarray] = {}
    os.makedirs(os.path.join(args.workdir, "grids"), exist_ok=True)
    for name in ("mdlm", "vadd"):
        config = make_config(name, args)
        workdir = os.path.join(args.workdir, name)
        config, data, trainer, state = training.load_state(config, workdir)
        n_batches = -(-args.eval_images // int(config.data.eval_batch_size))
        ev = trainer.evaluate(state.ema_params, data.eval_batches(n_batches), args.seed)
        res = {"train_steps": int(state.step), "pos_embedding": config.model.pos_embedding,
               "training": arm_summary(args.workdir, name)}
        res.update({k: v for k, v in ev.items() if k.endswith("bpt") or k in (
            "eval_sequences", "eval_num_t")})
        results[name] = res
        print(name, json.dumps({k: round(v, 5) if isinstance(v, float) else v
                                for k, v in res.items()}), flush=True)
        modes = ("per_step", "per_trajectory") if name == "vadd" else (None,)
        for mode in modes:
            for steps in args.steps:
                sc = config.sampler.copy_and_resolve_references()
                sc.name, sc.num_steps = "ancestral", steps
                if mode is not None:
                    sc.latent = mode
                toks = np.asarray(trainer.generate(state.ema_params, jax.random.key(100 + steps),
                                                   16, 784, sc).tokens)
                tag = f"{name}{'' if mode is None else '_' + mode}_{steps}step"
                panels[tag] = grid(toks)
                results[tag + "_mean_ink"] = float(toks.mean())

    results["data_mean_ink"] = float(np.mean(np.concatenate(
        [b["tokens"] for b in data.eval_batches(n_batches)])))
    with open(os.path.join(args.workdir, "vadd_mnist.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for tag, img in panels.items():
        plt.imsave(os.path.join(args.workdir, "grids", f"{tag}.png"), img, cmap="gray_r")
    rows = ["mdlm", "vadd_per_step", "vadd_per_trajectory"]
    fig, axes = plt.subplots(len(rows), len(args.steps),
                             figsize=(2.6 * len(args.steps), 2.8 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j, steps in enumerate(args.steps):
            ax = axes[i][j]
            ax.imshow(panels[f"{row}_{steps}step"], cmap="gray_r")
            ax.set_title(f"{row.replace('_', ' ')}, {steps} step{'s' if steps > 1 else ''}",
                         fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(args.workdir, "vadd_mnist_samples.png"), dpi=110)


if __name__ == "__main__":
    main()
