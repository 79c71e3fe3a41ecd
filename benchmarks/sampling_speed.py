"""Tokens per second of masked-diffusion samplers with a small random transformer.

    python benchmarks/sampling_speed.py [--seq_len 1024] [--vocab 32768] [--steps 1024] [--batch 1]
        [--timed_steps N]

Rows (`--steps` defaults to `--seq_len`; compilation excluded, each sampler runs once before timing):
  ancestral_dense_exact   the named baseline: the dense ancestral step (reverse kernel over all
                          V + 1 states at every position, `ancestral.run_dense`, no output reuse)
                          with the per-class 64-bit exact categorical ('exact_dense'): the path
                          of the sampler before the sparse rewrite, paying a network call with full logits
                          and an L x (V + 1) categorical at every step;
  ancestral_dense         the same dense step with the blocked exact categorical (the default
                          draw, sampling/categorical.py (2)): what the new draw alone buys;
  ancestral               the sampler as shipped ('ancestral' on the masked process,
                          `ancestral.run_masked`): unmasking decided first, the network called
                          only in steps where something unmasks, with logits only there;
  first_hitting           one network call per token, logits at that token only.
All rows use the model's `output_positions` where the sampler asks for it (the dense rows never
do). Prints seconds, NFE, tokens/s, first-hitting's speed-up over the baseline (the goal:
>= 20x at L = 1024, V = 32768, steps = L) and ancestral's time over first-hitting's (goal <= 1.5).

On a CPU the dense rows take seconds per step at L = V-scale sizes. `--timed_steps N` then runs
only the first N steps of the `--steps` grid and extrapolates linearly to all of them: every step
of the dense scan has the same shapes and the same work (no output reuse), so its cost does not
depend on the step index. Lines computed this way are marked "extrapolated" (their NFE column
counts the timed steps). The other rows always run in full.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections

from discrete_diffusion import sampling
from discrete_diffusion.models import DiffusionTransformer, example_inputs
from discrete_diffusion.sampling import ancestral


def random_model(vocab: int, seq_len: int, d_model: int, layers: int):
    """A DiT with random (not zero-initialized) weights, not time-conditioned (MDLM); its
    model_fn accepts `output_positions`."""
    model = DiffusionTransformer(num_classes=vocab, input_vocab_size=vocab + 1, num_layers=layers,
                                 d_model=d_model, num_heads=4, cond_dim=64, dropout=0.0,
                                 time_conditioning=False)
    params = model.init(jax.random.key(0), **example_inputs(model, 1, seq_len))["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noise = [0.05 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    params = jax.tree.unflatten(tree, noise)

    def model_fn(x_t, t, output_positions=None):
        return model.apply({"params": params}, x_t, t, output_positions=output_positions)

    return model_fn


ROWS = [  # label, sampler name, runner, categorical, dense (extrapolated with --timed_steps)
    ("ancestral_dense_exact", "ancestral", ancestral.run_dense, "exact_dense", True),
    ("ancestral_dense", "ancestral", ancestral.run_dense, "exact", True),
    ("ancestral", "ancestral", ancestral.run, "exact", False),
    ("first_hitting", "first_hitting", sampling.first_hitting.run, "exact", False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--timed_steps", type=int, default=None,
                        help="run this many steps of the dense rows and extrapolate to --steps")
    parser.add_argument("--rows", nargs="+", default=[r[0] for r in ROWS],
                        choices=[r[0] for r in ROWS])
    args = parser.parse_args()
    steps = args.steps or args.seq_len
    model_fn = random_model(args.vocab, args.seq_len, args.d_model, args.layers)
    print(f"device {jax.devices()[0].device_kind}; L={args.seq_len} V={args.vocab} steps={steps} "
          f"batch={args.batch} model: {args.layers} layers, d={args.d_model}", flush=True)
    times = {}
    for label, name, runner, method, dense in ROWS:
        if label not in args.rows:
            continue
        partial = dense and args.timed_steps is not None and args.timed_steps < steps
        config = ml_collections.ConfigDict({
            "process": {"name": "masked", "schedule": "linear", "num_classes": args.vocab},
            "model": {"parameterization": "denoiser", "time_conditioning": False},
            "sampler": {"name": name, "categorical": method},
        })
        if name == "ancestral":
            config.sampler.num_steps = args.timed_steps if partial else steps
            config.sampler.reuse_output = False  # read by the dense step only
        ctx = sampling.make_context(model_fn, config, args.batch, args.seq_len)
        run = jax.jit(lambda key, ctx=ctx, runner=runner: runner(key, ctx))
        jax.block_until_ready(run(jax.random.key(0)))  # compile
        start = time.perf_counter()
        tokens, nfe = jax.block_until_ready(run(jax.random.key(1)))
        seconds = time.perf_counter() - start
        assert int(jnp.max(tokens)) <= args.vocab  # (mask id = V only in a partial run)
        note = ""
        if partial:
            seconds *= steps / args.timed_steps
            note = f"  (extrapolated from {args.timed_steps} timed steps)"
        times[label] = seconds
        print(f"{label:>22}: {seconds:9.2f} s  NFE {int(nfe):5d}  "
              f"{args.batch * args.seq_len / seconds:10.1f} tokens/s{note}", flush=True)
    fhs = times.get("first_hitting")
    if fhs:
        for label in ("ancestral_dense_exact", "ancestral_dense"):
            if label in times:
                print(f"first_hitting speed-up over {label}: {times[label] / fhs:.1f}x "
                      + ("(goal >= 20x)" if label == "ancestral_dense_exact" else ""))
        if "ancestral" in times:
            print(f"ancestral time / first_hitting time: {times['ancestral'] / fhs:.2f} "
                  "(goal <= 1.5)")


if __name__ == "__main__":
    main()
