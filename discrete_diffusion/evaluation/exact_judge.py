"""The ideal judge: exact likelihoods of samples under the true generator, and exact-law TV.

**Synthetic Markov corpus** (``data.synthetic.MarkovChain``, stationary, K states, entropy rate
``H = sum_i pi_i H(P_i)``). The judge is the generator itself, so for samples ``x^s`` of length L

    NLL_s = -log p(x^s_1:L) = -log pi(x_1) - sum_{t=2}^L log P(x_t | x_{t-1})   (nats),

computed by ``MarkovChain.exact_log_likelihood``; ``nll_per_token_s = NLL_s / L`` and the
generative perplexity under the truth is ``exp(sum_s NLL_s / (N L))``. For exact samples
``E[NLL_s] = H(X_1:L) = H(pi) + (L - 1) H`` (``MarkovChain.sequence_entropy``), so the reference
per-token level at length L is

    h_L = H(X_1:L) / L = H + (H(pi) - H) / L     (-> H as L -> infinity),

not H itself: the first token costs H(pi) ~ log K, a bias of order 1/L that is many standard
errors at the sample sizes used. ``markov_judge`` reports the signed gap

    gap = mean_s nll_per_token_s - h_L,      se = std_s(nll_per_token_s) / sqrt(N),

and ``z = gap / se``: |z| <~ 2 for a sampler of the true law. A negative gap means samples that
are *more* probable than the truth's own (too little diversity: low temperature, float32 Gumbel
noise, mode seeking); a positive one, too diffuse or wrong samples. The gap is
``E_q[-log p] / L - H_p / L``, which is *not* a divergence: a sampler can reach gap 0 while being
wrong (e.g. mixing sharp and diffuse samples), so read it next to a diversity statistic
(``text_stats``). Samples containing a transition of probability 0 get ``NLL = inf``;
``frac_impossible`` counts them, and the means become inf; ``nll_per_token_possible`` and
``gen_ppl_possible`` are the mean and perplexity of the other samples.

**Enumerable toys** (a law ``p`` over all K^L sequences, as in ``tests/oracle.py``): the total
variation of the empirical law of N samples, ``TV(p_hat, p) = 1/2 sum_x |p_hat(x) - p(x)|``, is
positive even for exact samples. Its exact expectation for N exact draws (the multinomial "noise
floor") follows from the binomial marginals ``N p_hat(x) ~ Bin(N, p(x))`` and de Moivre's mean
absolute deviation ``E|X - N p| = 2 m C(N, m) p^m (1 - p)^(N - m + 1)``, ``m = floor(N p) + 1``:

    E[TV] = 1/(2N) sum_x E|N p_hat(x) - N p(x)|,

``~ sum_x sqrt(p(x)(1 - p(x)) / (2 pi N))`` for large N. A sampler is judged by ``TV / floor``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from discrete_diffusion.data.synthetic import MarkovChain


def sequence_nll(chain: MarkovChain, samples: np.ndarray) -> np.ndarray:
    """``-log p(x_1:L)`` in nats of each row of ``samples`` (int ``[N, L]``) under ``chain``,
    float64 ``[N]`` (inf where a transition has probability 0)."""
    return -chain.exact_log_likelihood(np.asarray(samples))


def markov_judge(chain: MarkovChain, samples: np.ndarray) -> dict[str, float]:
    """Judge samples ``[N, L]`` of the synthetic corpus with the true chain (module docstring).

    Returns floats: ``nll`` (mean nats per sequence), ``nll_per_token`` (mean over samples of
    NLL_s / L), ``gen_ppl`` (``exp(sum NLL / (N L))``), ``entropy_rate`` (H),
    ``entropy_per_token`` (h_L, the exact expected NLL per token at this length), ``true_ppl``
    (``exp(h_L)``), ``gap`` and ``gap_se`` and ``z`` (gap / se), ``gap_vs_rate``
    (``mean nll_per_token - H``, biased by ``(H(pi) - H) / L`` even for exact samples),
    ``frac_impossible``, ``num_samples``, ``seq_len``.
    """
    x = np.asarray(samples)
    if x.ndim != 2:
        raise ValueError(f"samples must be [N, L], got shape {x.shape}")
    N, L = x.shape
    nll = sequence_nll(chain, x)  # [N]
    per_token = nll / L
    rate = chain.entropy_rate()
    h_L = chain.sequence_entropy(L) / L
    mean = float(per_token.mean())
    with np.errstate(invalid="ignore"):
        se = float(per_token.std(ddof=1) / math.sqrt(N)) if N > 1 else math.nan
    gap = mean - h_L
    return {
        "nll": float(nll.mean()),
        "nll_per_token": mean,
        "gen_ppl": math.exp(mean) if math.isfinite(mean) else math.inf,
        "entropy_rate": rate,
        "entropy_per_token": h_L,
        "true_ppl": math.exp(h_L),
        "gap": gap,
        "gap_se": se,
        "z": gap / se if se > 0 else math.nan,
        "gap_vs_rate": mean - rate,
        "frac_impossible": float(np.mean(~np.isfinite(nll))),
        **_possible_part(per_token),
        "num_samples": float(N),
        "seq_len": float(L),
    }


def _possible_part(per_token: np.ndarray) -> dict[str, float]:
    """The NLL per token and perplexity of the samples of finite NLL (nan when there is none):
    with any impossible sample the means above are inf, and these say how the rest fare."""
    ok = per_token[np.isfinite(per_token)]
    mean = float(ok.mean()) if ok.size else math.nan
    return {"nll_per_token_possible": mean, "gen_ppl_possible": math.exp(mean)}


def markov_law(chain: MarkovChain, seq_len: int) -> np.ndarray:
    """The exact law of the chain's length-``seq_len`` sequences, ``[K] * seq_len`` (axis i is
    position i); enumerates K^L sequences, so for toys only."""
    K = chain.vocab_size
    if K**seq_len > 10**7:
        raise ValueError(f"K^L = {K}^{seq_len} sequences is too many to enumerate")
    seqs = np.array(list(itertools.product(range(K), repeat=seq_len)), dtype=np.int64)
    return np.exp(chain.exact_log_likelihood(seqs)).reshape([K] * seq_len)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """``TV(p, q) = 1/2 sum |p - q|`` of two laws over the same (flattened) states."""
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def empirical_law(samples: np.ndarray, K: int) -> np.ndarray:
    """Histogram of int sequences ``[N, L]`` over the K^L states, flattened in the order of
    ``itertools.product(range(K), repeat=L)`` (``law.reshape(-1)`` of a ``[K] * L`` array)."""
    samples = np.asarray(samples)
    L = samples.shape[1]
    idx = np.zeros(len(samples), dtype=np.int64)
    for i in range(L):
        idx = idx * K + samples[:, i]
    return np.bincount(idx, minlength=K**L) / len(samples)


def sample_tv(samples: np.ndarray, law: np.ndarray) -> float:
    """TV between the empirical law of ``samples`` (int ``[N, L]``) and ``law`` (``[K] * L``)."""
    law = np.asarray(law)
    return total_variation(empirical_law(samples, law.shape[0]), law.reshape(-1))


def _binomial_mad(n: int, p: float) -> float:
    """De Moivre: ``E|X - n p|`` for ``X ~ Bin(n, p)`` (computed in log space)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    m = math.floor(n * p) + 1
    if m > n:
        return 0.0
    log_term = (
        math.log(2 * m) + math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1)
        + m * math.log(p) + (n - m + 1) * math.log1p(-p)
    )
    return math.exp(log_term)


def expected_tv_floor(p: np.ndarray, n: int) -> float:
    """Exact ``E[TV(p_hat, p)]`` for the empirical law ``p_hat`` of ``n`` exact draws from ``p``
    (any shape, flattened): ``1/(2n) sum_x E|Bin(n, p(x)) - n p(x)|`` (module docstring)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    return sum(_binomial_mad(int(n), float(px)) for px in p) / (2.0 * n)


def monte_carlo_tv_floor(p: np.ndarray, n: int, reps: int = 200, seed: int = 0) -> float:
    """Monte-Carlo estimate of ``expected_tv_floor``: mean TV between ``p`` and the empirical
    laws of ``reps`` independent multinomial samples of size ``n`` (``np.random.default_rng``)."""
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, p, size=reps)  # [reps, S]
    return float(np.mean(0.5 * np.abs(counts / n - p[None]).sum(axis=1)))


def tv_report(samples: np.ndarray, law: np.ndarray) -> dict[str, float]:
    """``tv`` of the samples to ``law`` (``[K] * L``), the exact ``floor`` at their number,
    ``ratio = tv / floor`` (about 1 for an exact sampler) and ``num_samples``."""
    n = len(samples)
    tv = sample_tv(samples, law)
    floor = expected_tv_floor(law, n)
    return {"tv": tv, "floor": floor, "ratio": tv / floor, "num_samples": float(n)}
