"""Total variation of the ancestral samplers fed the exact model, against the multinomial floor.

    python benchmarks/ancestral_tv.py [--num_samples 20000] [--steps 100]

Toy law: K = 3 classes, L = 2 positions (testing/oracle.py). Prints the TV of each sampler's empirical
law to the true law, the mean TV of an exact multinomial sample of the same size (the floor), their
ratio and the NFE.
"""

from __future__ import annotations

import argparse

import jax
import ml_collections
import numpy as np

import discrete_diffusion as dd
from discrete_diffusion.testing import oracle

SAMPLERS = [
    ("masked", "denoiser", "loo_plugin"),
    ("uniform", "loo", "loo_plugin"),
    ("uniform", "denoiser", "denoiser_mixture"),
    ("uniform", "denoiser", "loo_plugin"),
    ("uniform", "denoiser", "denoiser_plugin"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=20_000)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    K, L = 3, 2
    p0 = oracle.toy_law(K, L, seed=1)
    target = p0.reshape(-1)
    floor = oracle.expected_tv_floor(target, args.num_samples)
    print(f"multinomial floor TV at n={args.num_samples}: {floor:.5f}")
    print(f"{'process':>8} {'network':>9} {'bridge':>17} {'steps':>6} {'TV':>8} {'TV/floor':>9} {'NFE':>5}")
    for process, parameterization, bridge in SAMPLERS:
        for steps in args.steps:
            config = ml_collections.ConfigDict({
                "process": {"name": process, "schedule": "linear", "num_classes": K},
                "model": {"parameterization": parameterization},
                "sampler": {"name": "ancestral", "num_steps": steps, "bridge": bridge},
            })
            proc = dd.processes.from_config(config.process)
            model = oracle.exact_model_fn(p0, proc, parameterization)
            result = dd.generate(jax.random.key(0), model, config, args.num_samples, L)
            tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), K), target)
            print(f"{process:>8} {parameterization:>9} {bridge:>17} {steps:>6} {tv:>8.5f} "
                  f"{tv / floor:>9.2f} {result.nfe:>5}")


if __name__ == "__main__":
    main()
