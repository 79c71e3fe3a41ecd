"""Measured bias of the approximate samplers on the toy law (exact model: testing/oracle.py).

    python benchmarks/approximate_samplers_tv.py [--num_samples 20000] [--steps 100] [--only audm,reaudm]

Prints TV to the true law and its ratio to the multinomial floor for Psi with kappa < 1, ReMDM
schedules (remdm_loop with ReMDM's hold at alpha_on = 0.9), confidence-based Gibbs correction
(with and without the Metropolis-Hastings correction, `mh_correct`) and parallel first-hitting.
With an exact model these samplers are biased only through the factorized (per-position
independent) prediction.
Then guidance (`guided`): both classifier-free guidance forms and classifier guidance with several
samplers, on a class-conditional toy with exact models and classifier.
"""

from __future__ import annotations

import argparse

import jax
import ml_collections
import numpy as np

import discrete_diffusion as dd
from discrete_diffusion.testing import oracle

CASES = [
    ("masked", "ancestral", {}),
    ("uniform", "ancestral", {}),
    ("masked", "psi", {"kappa": 1.0}),
    ("masked", "psi", {"kappa": 0.9}),
    ("masked", "psi", {"kappa": 0.5}),
    ("masked", "psi", {"kappa_schedule": "remdm_cap", "eta": 0.05}),
    ("masked", "psi", {"kappa_schedule": "remdm_rescale", "eta": 0.5}),
    ("masked", "psi", {"kappa_schedule": "remdm_loop", "eta": 0.05}),
    ("masked", "psi", {"kappa_schedule": "remdm_loop"}),  # ReMDM's defaults: alpha_on 0.9, eta 0.02
    ("masked", "psi", {"kappa_schedule": "remdm_conf"}),
    ("uniform", "psi", {"kappa": 0.9}),
    ("uniform", "psi", {"kappa": 0.5}),
    ("uniform", "informed_pc", {"corrector_steps": 1, "sites_per_sweep": 1, "site_rule": "random"}),
    ("uniform", "informed_pc", {"corrector_steps": 2, "sites_per_sweep": 2}),
    # one site per sweep by confidence: biased without, exact with the Metropolis-Hastings correction
    ("uniform", "informed_pc", {"corrector_steps": 2, "sites_per_sweep": 1}),
    ("uniform", "informed_pc", {"corrector_steps": 2, "mh_correct": True}),
    ("uniform", "informed_pc", {"corrector_steps": 2, "mh_correct": True,
                                "site_rule": "lowest_current_prob"}),
    ("masked", "first_hitting", {"tokens_per_step": 1}),
    ("masked", "first_hitting", {"tokens_per_step": 3}),
    ("masked", "score_euler", {}),
    ("uniform", "score_euler", {}),
    ("uniform", "score_tweedie", {}),
    ("uniform_absorbing", "audm", {}),
    ("uniform_absorbing", "reaudm", {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--only", default="",
                        help="comma-separated sampler names, or 'guided' (default: every row)")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    K, L = 3, 3
    p0 = oracle.toy_law(K, L, seed=1)
    target = p0.reshape(-1)
    floor = oracle.expected_tv_floor(target, args.num_samples)
    print(f"toy law K={K} L={L}; multinomial floor TV at n={args.num_samples}: {floor:.5f}")
    for process, name, extra in CASES:
        if only and name not in only:
            continue
        config = ml_collections.ConfigDict({
            "process": {"name": process, "schedule": "linear", "num_classes": K},
            "model": {"parameterization": "loo" if process == "uniform" else "denoiser"},
            "sampler": {"name": name, "num_steps": args.steps, **extra},
        })
        proc = dd.processes.from_config(config.process)
        if process == "uniform_absorbing":
            model = oracle.exact_audm_model_fn(p0, proc)
        else:
            model = oracle.exact_model_fn(p0, proc, config.model.parameterization)
        result = dd.generate(jax.random.key(0), model, config, args.num_samples, L)
        tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), K), target)
        print(f"{process:>17} {name:>14} {str(extra):<62} TV {tv:.5f}  x{tv / floor:5.2f}  NFE {result.nfe}")
    if not only or "guided" in only:
        guided(args)


# Guidance on a class-conditional toy (K = 3, L = 2, labels {0, 1}, exact conditional models and
# exact noisy classifier): TV of the samples for label 0 to p(x | y) at w = 1 (where both CFG forms
# and classifier guidance are exact in the limit of small steps) and to the tilted law
# p(x | y)^w p(x)^(1 - w) at w = 2 (which no per-step guidance samples exactly).
GUIDED_CASES = [
    ("masked", "ancestral", {"guidance": "cfg", "cfg_form": "denoiser"}),
    ("masked", "ancestral", {"guidance": "cfg", "cfg_form": "posterior"}),
    ("uniform", "ancestral", {"guidance": "cfg", "cfg_form": "denoiser"}),
    ("uniform", "ancestral", {"guidance": "cfg", "cfg_form": "posterior"}),
    ("masked", "ancestral", {"guidance": "classifier"}),
    ("uniform", "ancestral", {"guidance": "classifier"}),
    ("uniform", "ancestral", {"guidance": "classifier", "classifier_time": "s"}),
    ("uniform", "psi", {"guidance": "classifier", "kappa": 0.9}),
    ("uniform", "score_tweedie", {"guidance": "classifier"}),
    ("uniform", "informed_pc", {"guidance": "classifier", "corrector_steps": 1, "sites_per_sweep": 1,
                                "site_rule": "random"}),
]


def guided(args: argparse.Namespace) -> None:
    from discrete_diffusion.sampling import guidance

    K, L, label = 3, 2, 0
    p_y = np.array([0.4, 0.6])
    laws = np.stack([oracle.toy_law(K, L, seed=3), oracle.toy_law(K, L, seed=4)])
    p_x = np.tensordot(p_y, laws, axes=1)
    print(f"\nguidance: toy K={K} L={L}, label {label}; TV to p(x|y) (w = 1) and to "
          "p(x|y)^w p(x)^(1-w) (w = 2)")
    for process, name, extra in GUIDED_CASES:
        for w in (1.0, 2.0):
            target = laws[label].reshape(-1) ** w * p_x.reshape(-1) ** (1 - w)
            target = target / target.sum()
            floor = oracle.expected_tv_floor(target, args.num_samples)
            config = ml_collections.ConfigDict({
                "process": {"name": process, "schedule": "linear", "num_classes": K},
                "model": {"parameterization": "denoiser", "num_labels": 2},
                "sampler": {"name": name, "num_steps": args.steps, "guidance_weight": w, **extra},
            })
            proc = dd.processes.from_config(config.process)
            model = oracle.exact_conditional_model_fn(np.stack([*laws, p_x]), proc)
            cls = oracle.exact_classifier_fn(p_y, laws, proc) if extra["guidance"] == "classifier" else None
            result = guidance.guided_generate(jax.random.key(0), model, config, args.num_samples, L,
                                              label=label, classifier_fn=cls)
            tv = oracle.total_variation(oracle.empirical_law(np.asarray(result.tokens), K), target)
            print(f"{process:>17} {name:>14} {str(extra):<62} w={w:<3} TV {tv:.5f}  x{tv / floor:5.2f}  "
                  f"NFE {result.nfe}")


if __name__ == "__main__":
    main()
