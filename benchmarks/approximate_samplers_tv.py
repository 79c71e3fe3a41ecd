"""Measured bias of the approximate samplers on the toy law (exact model: testing/oracle.py).

    python benchmarks/approximate_samplers_tv.py [--num_samples 20000] [--steps 100]

Prints TV to the true law and its ratio to the multinomial floor for Psi with kappa < 1, ReMDM
schedules, confidence-based Gibbs correction and parallel first-hitting. With an exact model
these samplers are biased only through the factorized (per-position independent) prediction.
"""

from __future__ import annotations

import argparse

import jax
import ml_collections
import numpy as np

import discrete_diffusion as dd
from discrete_diffusion.testing import oracle

CASES = [
    ("masked", "psi", {"kappa": 1.0}),
    ("masked", "psi", {"kappa": 0.9}),
    ("masked", "psi", {"kappa": 0.5}),
    ("masked", "psi", {"kappa_schedule": "remdm_cap", "eta": 0.05}),
    ("masked", "psi", {"kappa_schedule": "remdm_rescale", "eta": 0.5}),
    ("masked", "psi", {"kappa_schedule": "remdm_loop", "eta": 0.05}),
    ("masked", "psi", {"kappa_schedule": "remdm_conf"}),
    ("uniform", "psi", {"kappa": 0.9}),
    ("uniform", "psi", {"kappa": 0.5}),
    ("uniform", "informed_pc", {"corrector_steps": 1, "sites_per_sweep": 1, "site_rule": "random"}),
    ("uniform", "informed_pc", {"corrector_steps": 2, "sites_per_sweep": 2}),
    ("masked", "first_hitting", {"tokens_per_step": 1}),
    ("masked", "first_hitting", {"tokens_per_step": 3}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    K, L = 3, 3
    p0 = oracle.toy_law(K, L, seed=1)
    target = p0.reshape(-1)
    floor = oracle.expected_tv_floor(target, args.num_samples)
    print(f"toy law K={K} L={L}; multinomial floor TV at n={args.num_samples}: {floor:.5f}")
    for process, name, extra in CASES:
        config = ml_collections.ConfigDict({
            "process": {"name": process, "schedule": "linear", "num_classes": K},
            "model": {"parameterization": "loo" if process == "uniform" else "denoiser"},
            "sampler": {"name": name, "num_steps": args.steps, **extra},
        })
        proc = dd.processes.from_config(config.process)
        model = oracle.exact_model_fn(p0, proc, config.model.parameterization)
        result = dd.generate(jax.random.key(0), model, config, args.num_samples, L)
        tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), K), target)
        print(f"{process:>8} {name:>14} {str(extra):<62} TV {tv:.5f}  x{tv / floor:5.2f}  NFE {result.nfe}")


if __name__ == "__main__":
    main()
