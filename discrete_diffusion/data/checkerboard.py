"""The 2-D checkerboard toy of VADD's few-step experiments, discretised to a grid: sequences of
L = 2 tokens (the x bin, the y bin) over K = BINS classes, with an exactly known law.

The continuous law (FFJORD's checkerboard, used by the 2-D toy experiments of diffusion papers) is
uniform over the 8 dark cells of a 4 x 4 board on [-4, 4]^2 (cells of side 2; cell (i, j) is dark
when i + j is even). With BINS = 32 each bin has width 0.25 and the cells are unions of 8 x 8
bins, so the discretised law is uniform over the 8 * 64 = 512 dark bins (`law()`), and
H = log 512 nats per sequence. Its marginals are uniform over the 32 bins, so any sampler that
draws the two coordinates independently (one-step masked diffusion) samples the uniform law over
all 1024 bins: TV = 1/2 and JS = 3/4 log(4/3) = 0.2158 nats from the checkerboard.
"""

from __future__ import annotations

import numpy as np

BINS = 32  # grid cells per axis: tokens 0 .. BINS - 1
CELLS = 4  # board cells per axis


def law(bins: int = BINS) -> np.ndarray:
    """The exact discretised law `[bins, bins]` (x bin, y bin), uniform over the dark bins."""
    if bins % CELLS:
        raise ValueError(f"bins={bins} must be a multiple of {CELLS}")
    cell = np.arange(bins) // (bins // CELLS)
    dark = (cell[:, None] + cell[None, :]) % 2 == 0
    return dark / dark.sum()


def sample(rng: np.random.Generator, n: int, bins: int = BINS) -> np.ndarray:
    """`n` draws `[n, 2]` int32 (x bin, y bin) from `law(bins)`."""
    p = law(bins).reshape(-1)
    idx = rng.choice(p.size, size=n, p=p)
    return np.stack([idx // bins, idx % bins], axis=1).astype(np.int32)


def load_splits(num_train: int, num_eval: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train `[num_train, 2]`, validation `[num_eval, 2]`) token arrays, seeded."""
    rng = np.random.default_rng([seed, 2026])
    return sample(rng, num_train), sample(rng, num_eval)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats, at most log 2) of two laws over the same states."""
    p = np.asarray(p, np.float64).reshape(-1)
    q = np.asarray(q, np.float64).reshape(-1)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def histogram(tokens: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Empirical law `[bins, bins]` of token pairs `[n, 2]`."""
    tokens = np.asarray(tokens)
    counts = np.zeros((bins, bins))
    np.add.at(counts, (tokens[:, 0], tokens[:, 1]), 1.0)
    return counts / max(len(tokens), 1)
