"""Sampling speed of a converted released checkpoint (discrete_diffusion/interop): each sampler
draws `--num_samples` sequences of `--seq_len` tokens, timed after one untimed run (compilation).

    python benchmarks/converted_sample.py --source=PATH --kind=mdlm [--num_heads=12] \\
        [--time_conditioning=false] [--seq_len=1024] [--steps=1024] \\
        [--samplers=ancestral,first_hitting] [--num_samples=1] [--print_tokens=32]

Prints per sampler: seconds, tokens/s, and the first `--print_tokens` ids of the first sample
(ids, no tokenizer needed; the prepared dataset's tokenizer decodes them where it exists).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def _bool_or_none(text: str) -> bool | None:
    value = {"auto": None, "true": True, "false": False}.get(text.lower(), "?")
    if value == "?":
        raise argparse.ArgumentTypeError(f"{text!r} is not one of auto, true, false")
    return value


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--kind", required=True, help="mdlm | duo | udlm | sedd")
    ap.add_argument("--num_heads", type=int, default=None)
    ap.add_argument("--time_conditioning", type=_bool_or_none, default=None)
    ap.add_argument("--seq_len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: seq_len)")
    ap.add_argument("--samplers", default="ancestral,first_hitting")
    ap.add_argument("--num_samples", type=int, default=1)
    ap.add_argument("--print_tokens", type=int, default=32)
    args = ap.parse_args(argv)

    from discrete_diffusion import interop, methods

    t0 = time.time()
    loaded = interop.load(args.source, args.kind, num_heads=args.num_heads,
                          time_conditioning=args.time_conditioning)
    config = loaded.config
    method = methods.get(config, int(config.process.num_classes))
    params = {"network": jax.tree.map(jax.numpy.asarray, loaded.params)}
    print(f"loaded {args.source} ({args.kind}) in {time.time() - t0:.1f} s: layers="
          f"{config.model.num_layers} d={config.model.d_model} heads={config.model.num_heads} "
          f"K={config.process.num_classes}; devices {jax.devices()}", flush=True)
    times = {}
    for name in args.samplers.split(","):
        sampler = config.sampler.copy_and_resolve_references()
        with sampler.unlocked():
            sampler.name = name
            sampler.num_steps = args.steps or args.seq_len
        key = jax.random.PRNGKey(0)
        jax.block_until_ready(method.generate(params, key, args.num_samples, args.seq_len, sampler))
        t = time.perf_counter()
        out = jax.block_until_ready(method.generate(params, jax.random.PRNGKey(1),
                                                    args.num_samples, args.seq_len, sampler))
        times[name] = time.perf_counter() - t
        tokens = np.asarray(getattr(out, "tokens", out))
        nfe = getattr(out, "nfe", "?")
        print(f"{name}: {times[name]:.2f} s for {args.num_samples} x {args.seq_len} tokens "
              f"(NFE {nfe}), {args.num_samples * args.seq_len / times[name]:,.0f} tokens/s; "
              f"first ids {tokens.reshape(-1)[:args.print_tokens].tolist()}", flush=True)
    if "ancestral" in times and "first_hitting" in times:
        print(f"ancestral / first_hitting time: {times['ancestral'] / times['first_hitting']:.2f}")
    return times


if __name__ == "__main__":
    main()
