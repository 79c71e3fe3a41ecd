"""Synthetic sequences with an exactly known likelihood: a random first-order Markov chain.

Tokens ``0 .. K-1`` are the chain's states. Each row of the transition matrix puts Dirichlet
(``concentration``) mass on ``support`` successors (a random subset), so the entropy rate is at
most ``log(support)``, well below ``log K``. Every row also contains the successor of a random
K-cycle, and token 0 may follow itself, which makes the chain irreducible and aperiodic: its
stationary distribution ``pi`` is unique. Sequences start from ``pi``, so the process is
stationary and everything is exact:

  * entropy rate (nats/token)   ``H = sum_i pi_i H(P_i)``;
  * ``log p(x_1:L)``            ``log pi(x_1) + sum_t log P(x_t | x_{t-1})``;
  * block entropy               ``H(X_1:L) = H(pi) + (L - 1) H``,

the last being the floor that any per-sequence NELBO of length-L sequences can reach.
Everything is determined by the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis)


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The ``pi`` with ``pi P = pi`` and ``sum(pi) = 1`` (least squares; exact for a unique pi)."""
    K = transition.shape[0]
    a = np.vstack([transition.T - np.eye(K), np.ones((1, K))])
    b = np.zeros(K + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


@dataclasses.dataclass(frozen=True)
class MarkovChain:
    """A stationary first-order Markov chain over K tokens (float64 parameters)."""

    transition: np.ndarray  # [K, K], rows sum to 1
    initial: np.ndarray  # [K], the stationary distribution

    @classmethod
    def random(
        cls,
        vocab_size: int,
        *,
        support: int = 4,
        concentration: float = 0.5,
        seed: int = 0,
    ) -> MarkovChain:
        """A random sparse chain; see the module docstring for the construction."""
        K = int(vocab_size)
        if K < 2:
            raise ValueError(f"config.data.synthetic_vocab_size must be >= 2, got {K}")
        if not 2 <= support <= K:
            raise ValueError(
                f"config.data.synthetic_support must lie in [2, synthetic_vocab_size={K}], "
                f"got {support}"
            )
        if concentration <= 0:
            raise ValueError(
                f"config.data.synthetic_concentration must be > 0, got {concentration}"
            )
        rng = np.random.default_rng([int(seed), 0])
        cycle = rng.permutation(K)
        successor = np.empty(K, dtype=np.int64)
        successor[cycle] = np.roll(cycle, -1)
        P = np.zeros((K, K))
        for i in range(K):
            forced = {int(successor[i])} | ({0} if i == 0 else set())
            others = rng.permutation([j for j in range(K) if j not in forced])
            cols = sorted(forced | {int(j) for j in others[: support - len(forced)]})
            P[i, cols] = rng.dirichlet(np.full(len(cols), concentration))
            P[i, cols] = np.maximum(P[i, cols], 1e-6)  # keep every support entry reachable
            P[i] /= P[i].sum()
        return cls(transition=P, initial=stationary_distribution(P))

    @property
    def vocab_size(self) -> int:
        """Number K of tokens."""
        return int(self.transition.shape[0])

    def entropy_rate(self) -> float:
        """Exact entropy rate in nats per token: ``sum_i pi_i H(P_i)``."""
        return float(self.initial @ _entropy(self.transition))

    def sequence_entropy(self, seq_len: int) -> float:
        """Exact entropy (nats) of a length-``seq_len`` block: ``H(pi) + (L-1) * rate``."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        return float(_entropy(self.initial)) + (seq_len - 1) * self.entropy_rate()

    def exact_log_likelihood(self, seqs: np.ndarray) -> np.ndarray:
        """Exact ``log p(x_1:L)`` in nats of each row of ``seqs [N, L]``, initial term included."""
        seqs = np.asarray(seqs)
        if seqs.ndim == 1:
            seqs = seqs[None]
        if seqs.min() < 0 or seqs.max() >= self.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        with np.errstate(divide="ignore"):
            logp = np.log(self.initial[seqs[:, 0]])
            logp = logp + np.log(self.transition[seqs[:, :-1], seqs[:, 1:]]).sum(axis=1)
        return logp

    def sample(self, num_sequences: int, seq_len: int, seed: int | list[int]) -> np.ndarray:
        """``num_sequences`` stationary sequences of length ``seq_len``, int32 ``[N, L]``."""
        rng = np.random.default_rng(seed)
        cdf = np.cumsum(self.transition, axis=1)
        cdf /= cdf[:, -1:]
        init_cdf = np.cumsum(self.initial)
        init_cdf /= init_cdf[-1]
        out = np.empty((num_sequences, seq_len), dtype=np.int32)
        out[:, 0] = np.searchsorted(init_cdf, rng.random(num_sequences), side="right")
        for t in range(1, seq_len):
            u = rng.random(num_sequences)
            out[:, t] = (cdf[out[:, t - 1]] <= u[:, None]).sum(axis=1)
        return out


def load_splits(
    *,
    vocab_size: int,
    seq_len: int,
    num_train: int,
    num_eval: int,
    support: int = 4,
    concentration: float = 0.5,
    seed: int = 0,
) -> tuple[MarkovChain, np.ndarray, np.ndarray]:
    """(chain, train ``[num_train, L]``, validation ``[num_eval, L]``), all from ``seed``."""
    chain = MarkovChain.random(vocab_size, support=support, concentration=concentration, seed=seed)
    train = chain.sample(num_train, seq_len, seed=[int(seed), 1])
    valid = chain.sample(num_eval, seq_len, seed=[int(seed), 2])
    return chain, train, valid
