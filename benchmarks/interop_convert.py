"""Cost of loading and converting a released-size checkpoint (discrete_diffusion.interop).

    JAX_PLATFORMS=cpu python benchmarks/interop_convert.py --dir=/tmp/interop_bench [--convert]

Writes a random state_dict with the reference DiT's names and the small model's shapes (12 x 768,
12 heads, C = 128, V = 50258 = GPT-2 + MDLM's mask, the `backbone.` prefix; 169.6M parameters) as
DIR/model.safetensors, then times `interop.load(DIR, 'mdlm')` (and, with --convert,
launch/convert_checkpoint.py into DIR/workdir), each in a fresh process, with its peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_state_dict(path: str, d: int = 768, c: int = 128, v: int = 50258, n: int = 12,
                     heads: int = 12) -> int:
    """A random float32 reference-DiT state_dict at `path`; returns its number of parameters."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    head_dim = d // heads
    w = {"vocab_embed.embedding": r(v, d), "sigma_map.mlp.0.weight": r(c, 256),
         "sigma_map.mlp.0.bias": r(c), "sigma_map.mlp.2.weight": r(c, c), "sigma_map.mlp.2.bias": r(c),
         "rotary_emb.inv_freq": (10_000.0 ** (-np.arange(0, head_dim, 2) / head_dim)).astype(np.float32)}
    for i in range(n):
        p = f"blocks.{i}."
        w.update({p + "norm1.weight": 1 + r(d), p + "norm2.weight": 1 + r(d),
                  p + "attn_qkv.weight": r(3 * d, d), p + "attn_out.weight": r(d, d),
                  p + "mlp.0.weight": r(4 * d, d), p + "mlp.0.bias": r(4 * d),
                  p + "mlp.2.weight": r(d, 4 * d), p + "mlp.2.bias": r(d),
                  p + "adaLN_modulation.weight": r(6 * d, c), p + "adaLN_modulation.bias": r(6 * d)})
    w.update({"output_layer.norm_final.weight": 1 + r(d), "output_layer.linear.weight": r(v, d),
              "output_layer.linear.bias": r(v), "output_layer.adaLN_modulation.weight": r(2 * d, c),
              "output_layer.adaLN_modulation.bias": r(2 * d)})
    save_file({f"backbone.{k}": x for k, x in w.items()}, path)
    return sum(x.size for k, x in w.items() if k != "rotary_emb.inv_freq")


def load_and_report(folder: str) -> None:
    """Times interop.load in this (fresh) process and prints its peak RSS."""
    import jax

    from discrete_diffusion import interop

    start = time.perf_counter()
    loaded = interop.load(folder, "mdlm")
    jax.block_until_ready(loaded.params)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"interop.load: {time.perf_counter() - start:.1f} s, peak RSS {peak:.2f} GB "
          f"(num_heads {loaded.info['num_heads']}, K {loaded.config.process.num_classes})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--convert", action="store_true", help="also write a workdir")
    ap.add_argument("--load_only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_only:  # the child process that measures the load alone
        load_and_report(args.dir)
        return
    os.makedirs(args.dir, exist_ok=True)
    n = write_state_dict(os.path.join(args.dir, "model.safetensors"))
    print(f"state_dict: {n:,} parameters", flush=True)
    subprocess.run([sys.executable, __file__, f"--dir={args.dir}", "--load_only"], check=True)
    if args.convert:
        workdir = os.path.join(args.dir, "workdir")
        start = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "launch", "convert_checkpoint.py"),
                        f"--source={args.dir}", "--kind=mdlm", f"--workdir={workdir}"], check=True)
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # max over both children
        print(f"convert_checkpoint.py: {time.perf_counter() - start:.1f} s, peak RSS {child:.2f} GB",
              flush=True)


if __name__ == "__main__":
    main()
