"""Tokens per second of masked-diffusion samplers with a small random transformer.

    python benchmarks/sampling_speed.py [--seq_len 1024] [--vocab 32768] [--steps 1024] [--batch 1]
        [--timed_steps N]

Compares ancestral sampling (exact 64-bit categorical over V + 1 classes at every position and
step, with and without MDLM's output reuse) against the first-hitting sampler (one network call and
one K-way categorical per token). `--steps` defaults to `--seq_len`. Compilation is excluded (each
sampler runs once before timing). Prints seconds, NFE, tokens/s and the speed-up of first-hitting.

On a CPU the ancestral sampler at L = V-scale sizes takes seconds per step (the exact categorical
draws 64 random bits for each of the L * (V + 1) classes at every step). `--timed_steps N` then runs
only the first N steps of the `--steps` grid and extrapolates linearly to all of them: every step of
the ancestral scan has the same shapes and the same work, so its cost does not depend on the step
index. Lines computed this way are marked "extrapolated". With output reuse the extrapolation
ignores the network calls that reuse would skip on the fine grid (about e^-1 of them at steps = L),
so it overstates that row's time by at most the network's share. First-hitting always runs in full.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections

from discrete_diffusion import sampling
from discrete_diffusion.models import DiffusionTransformer, example_inputs


def random_model(vocab: int, seq_len: int, d_model: int, layers: int):
    """A DiT with random (not zero-initialized) weights, not time-conditioned (MDLM)."""
    model = DiffusionTransformer(num_classes=vocab, input_vocab_size=vocab + 1, num_layers=layers,
                                 d_model=d_model, num_heads=4, cond_dim=64, dropout=0.0,
                                 time_conditioning=False)
    params = model.init(jax.random.key(0), **example_inputs(model, 1, seq_len))["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noise = [0.05 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    params = jax.tree.unflatten(tree, noise)
    return lambda x_t, t: model.apply({"params": params}, x_t, t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--timed_steps", type=int, default=None,
                        help="run this many ancestral steps and extrapolate to --steps")
    args = parser.parse_args()
    steps = args.steps or args.seq_len
    model_fn = random_model(args.vocab, args.seq_len, args.d_model, args.layers)
    print(f"device {jax.devices()[0].device_kind}; L={args.seq_len} V={args.vocab} steps={steps} "
          f"batch={args.batch} model: {args.layers} layers, d={args.d_model}")
    rows = []
    for label, name, reuse in [("ancestral", "ancestral", False), ("ancestral+reuse", "ancestral", True),
                               ("first_hitting", "first_hitting", False)]:
        partial = name == "ancestral" and args.timed_steps is not None and args.timed_steps < steps
        config = ml_collections.ConfigDict({
            "process": {"name": "masked", "schedule": "linear", "num_classes": args.vocab},
            "model": {"parameterization": "denoiser", "time_conditioning": False},
            "sampler": {"name": name, "num_steps": steps},
        })
        if name == "ancestral":  # the field only ancestral reads
            config.sampler.reuse_output = reuse
        if partial:
            config.sampler.num_steps = args.timed_steps  # same per-step shapes and work
        ctx = sampling.make_context(model_fn, config, args.batch, args.seq_len)
        run = jax.jit(lambda key, ctx=ctx, name=name: sampling.SAMPLERS[name].run(key, ctx))
        jax.block_until_ready(run(jax.random.key(0)))  # compile
        start = time.perf_counter()
        tokens, nfe = jax.block_until_ready(run(jax.random.key(1)))
        seconds = time.perf_counter() - start
        assert int(jnp.max(tokens)) < args.vocab
        note = ""
        if partial:
            seconds *= steps / args.timed_steps
            note = f"  (extrapolated from {args.timed_steps} timed steps)"
        rows.append((label, seconds, int(nfe)))
        print(f"{label:>16}: {seconds:8.2f} s  NFE {int(nfe):5d}  "
              f"{args.batch * args.seq_len / seconds:10.1f} tokens/s{note}", flush=True)
    fhs = rows[-1][1]
    for label, seconds, _ in rows[:-1]:
        print(f"first_hitting speed-up over {label}: {seconds / fhs:.1f}x")


if __name__ == "__main__":
    main()
