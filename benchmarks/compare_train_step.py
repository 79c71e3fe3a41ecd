"""Two versions of the library's train step in one process, run alternately: the ratio of their
step times on a machine too noisy for separate runs (the same step moves +-15% between processes).

    git worktree add /tmp/base <older commit>
    JAX_PLATFORMS=cpu python benchmarks/compare_train_step.py --base_tree=/tmp/base \\
        [--shape=small|12layer] [--rounds=20] [--update_only] [--now_options=K=V,...]

Each tree's `Trainer._train_step_checked` is compiled from that tree's own modules
(`discrete_diffusion` and `configs` are imported afresh from it, then dropped from sys.modules
before the next tree is imported; a compiled step does not depend on them afterwards), for
`configs/owt_absorbing.py` in float32 on uniform random ids at the shape of goal 2 of issue 27:
'small' = 6 layers, d = 256, 8 heads, V = 256, L = 256, batch 32; '12layer' = the config's
12 layers, d = 768, V = 50257, L = 1024, batch 2. Both steps run once untimed, then --rounds
rounds run one step of each (base first). With --update_only each tree compiles only the update
after the gradients (its `guarded_update` with the trainer's optimizer, EMA decay and non-finite
mode; fixed random gradients as an argument), which isolates the parameter-side passes.
`--now_options` passes XLA compiler options (e.g. xla_cpu_prefer_vector_width=512) to the newer
tree's compile only: with `--base_tree=.` the same step is compared with and without them.
Printed: XLA's bytes per step of each, every round's
times, the medians, their ratio and the median of the per-round ratios, with the CPU model and
the load average.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_throughput import machine_line  # noqa: E402

SHAPES = {
    "small": ({"model.num_layers": 6, "model.d_model": 256, "model.num_heads": 8,
               "data.seq_len": 256, "training.batch_size": 32}, 256),
    "12layer": ({"training.batch_size": 2}, 50257),
}


def _forget_library() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("discrete_diffusion", "configs"):
            del sys.modules[name]


def _update_only(trainer, state) -> tuple:
    """(lowered update, grads, loss): the trainer's update after the gradients, alone."""
    from discrete_diffusion.training import trainer as trainer_module

    def update(state, grads, loss):
        params, ema, opt_state, finite = trainer_module.guarded_update(
            trainer.tx, trainer.ema_decay, state.params, state.ema_params, state.opt_state, grads,
            jax.numpy.isfinite(loss), trainer.nonfinite_skip, trainer.adamw)
        return state.replace(params=params, ema_params=ema, opt_state=opt_state), None, finite

    leaves, treedef = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    grads = jax.tree.unflatten(treedef, [1e-3 * jax.random.normal(k, x.shape, x.dtype)
                                         for k, x in zip(keys, leaves, strict=True)])
    loss = jax.numpy.float32(1.0)
    return jax.jit(update, donate_argnums=(0,)).lower(state, grads, loss), grads, loss


def _options(text: str) -> dict[str, str | int | bool]:
    """'k=v,k2=v2' -> XLA compiler options (integers and true/false converted)."""
    out: dict[str, str | int | bool] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key] = (value.lower() == "true" if value.lower() in ("true", "false")
                    else int(value) if value.lstrip("-").isdigit() else value)
    return out


def build(root: str, shape: str, update_only: bool = False, options: dict | None = None) -> list:
    """[compiled step, state, batch] of the train step as the tree at `root` writes it
    (`update_only`: [compiled update, state, (grads, loss)]), compiled with XLA `options`."""
    overrides, vocab = SHAPES[shape]
    _forget_library()
    sys.path.insert(0, root)
    try:
        from discrete_diffusion import config_validation, training

        module = importlib.import_module("configs.owt_absorbing")
        if not (module.__file__.startswith(root) and training.__file__.startswith(root)):
            raise SystemExit(f"{root}: imported {training.__file__} instead of the tree's own")
        config = module.get_config()
        with config.unlocked():
            config.model.dtype = "float32"
            config.process.num_classes = vocab
            for key, value in overrides.items():
                *path, last = key.split(".")
                node = config
                for part in path:
                    node = node[part]
                node[last] = value
        config_validation.validate(config)
        config = config.copy_and_resolve_references()
        seq_len = int(config.data.seq_len)
        trainer = training.get_trainer(config, vocab, seq_len)
        state = trainer.init_state(0)
        rows = int(config.training.batch_size)
        batch = trainer.shard_batch({"tokens": np.random.default_rng(0).integers(
            0, vocab, (rows, seq_len), np.int32)})
        start = time.time()
        if update_only:
            lowered, grads, loss = _update_only(trainer, state)
            batch = (grads, loss)
        else:
            lowered = trainer._train_step_checked.lower(state, batch)
        compiled = lowered.compile(options or None)
        print(f"{root}: compiled in {time.time() - start:.0f} s, "
              f"{compiled.cost_analysis()['bytes accessed'] / 1e9:.2f} GB per step", flush=True)
        return [compiled, state, batch]
    finally:
        sys.path.remove(root)
        _forget_library()


def step(run: list) -> float:
    """One step of `run` (its state carried over: the step donates it); seconds."""
    compiled, state, batch = run
    start = time.perf_counter()
    state, _, health = compiled(state, *batch) if isinstance(batch, tuple) else compiled(state,
                                                                                          batch)
    jax.block_until_ready(health)
    run[1] = state
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base_tree", required=True, help="A worktree of the older commit.")
    parser.add_argument("--tree", default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), help="The newer tree (default: this one).")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--update_only", action="store_true",
                        help="Compile and time only the update after the gradients.")
    parser.add_argument("--now_options", default="",
                        help="XLA compiler options k=v,... for the newer tree's compile only.")
    args = parser.parse_args()
    trees = {"base": os.path.abspath(args.base_tree), "now": os.path.abspath(args.tree)}
    options = {"base": {}, "now": _options(args.now_options)}
    runs = {name: build(root, args.shape, args.update_only, options[name])
            for name, root in trees.items()}
    for run in runs.values():
        step(run)  # untimed
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.rounds):
        for name, run in runs.items():
            times[name].append(step(run))
        print(f"round {i}: " + ", ".join(f"{n} {1e3 * t[-1]:.0f} ms" for n, t in times.items()),
              flush=True)
    base, now = (float(np.median(times[n])) for n in ("base", "now"))
    ratios = [b / a for a, b in zip(times["base"], times["now"], strict=True)]
    what = f"{args.shape} update only" if args.update_only else args.shape
    print(f"{what}: median of {args.rounds} alternating steps: base {1e3 * base:.0f} ms, "
          f"now {1e3 * now:.0f} ms, ratio {now / base:.3f}; per-round ratios "
          f"{min(ratios):.2f}-{max(ratios):.2f}, median {np.median(ratios):.3f}; {machine_line()}")


if __name__ == "__main__":
    main()
