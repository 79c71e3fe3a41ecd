"""A synthetic corpus with one good decoding order: the second half hashes pairs of the first.

Sequences of L = 2n tokens over K classes (``config.data.name = 'pair_hash'``). The first half
x_1..x_n is i.i.d. uniform; the second half is a deterministic function of it,

    y_i = f(x_i, x_{i+1})        (i = 1..n, x_{n+1} := x_1, cyclic),

with f: K x K -> K a fixed random table (each of the K^2 entries uniform on K, drawn from the
seed), so f is many-to-one (about K pairs per value). Sequence = (x_1..x_n, y_1..y_n), or its
reversal with ``config.data.pair_hash_direction = 'reversed'``.

Why the order is recoverable by training. For an exact denoiser every decoding order has the
same NLL, H(X_1:L); orders differ only through how hard their conditionals are to learn.
Decoding the x half first (in any order inside it), then the y half, every conditional is easy:

    p(x_i | any revealed x's)        = 1/K                (uniform: a constant output)
    p(y_i | all x, revealed y's)     = 1[y_i = f(x_i, x_{i+1})]   (a K^2-entry lookup of two
                                                            tokens at fixed offsets n, n + 1)

Orders that reveal y's before their parents need p(y_i | partial evidence): the law of the y's
alone is a hidden Markov chain over the x's (y_i and y_{i+1} share x_{i+1}), so p(y_i | revealed
y's) is a forward-filtering computation over the revealed chain, and a masked x_i given revealed
y's is an inversion of f through the chain (intersecting fibres f^{-1}(y_{i-1}), f^{-1}(y_i)
and propagating): many-token, many-to-one, hard for a small network. The exception is local: a
y_i revealed while one parent is known and the other unknown (p(y_i | x_{i+1}) is a row of a
K x K table of distributions, then x_i | y_i, x_{i+1} is uniform over a fibre) stays easy, so
the x-first order is the easy one up to such local swaps (the training run of
benchmarks/learned_order_synthetic.py found one: y_n decoded before x_n). With one schedule for
every position (w = 1) hard orders dominate (a given y_i comes after both its parents with
probability 1/3); a learned schedule alpha_{t,l} = 1 - t^{w_l} recovers the order by making w
larger on the x half than on the y half (decoded earlier). The 'reversed' direction puts the y
half first, so the recovered order is then right-to-left in blocks: what is learned follows the
data, not the architecture.

Exact facts: H(X_1:L) = n log K nats per sequence (x uniform, y determined), i.e. log(K)/2 nats
per token, the floor of any per-sequence NELBO; log p(seq) = -n log K for a sequence with
y = f(x) and -inf otherwise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

DIRECTIONS = ("forward", "reversed")


@dataclasses.dataclass(frozen=True)
class PairHash:
    """The corpus: the table f `[K, K]` (int64) and the direction of the written sequence."""

    table: np.ndarray
    direction: str = "forward"

    @classmethod
    def random(cls, vocab_size: int, *, seed: int = 0, direction: str = "forward") -> PairHash:
        """f with every entry uniform on K, from `seed`."""
        K = int(vocab_size)
        if K < 2:
            raise ValueError(f"config.data.pair_hash_vocab_size must be >= 2, got {K}")
        if direction not in DIRECTIONS:
            raise ValueError(f"config.data.pair_hash_direction={direction!r} is not one of "
                             f"{list(DIRECTIONS)}")
        rng = np.random.default_rng([int(seed), 14])
        return cls(table=rng.integers(0, K, size=(K, K)), direction=direction)

    @property
    def vocab_size(self) -> int:
        """Number K of tokens."""
        return int(self.table.shape[0])

    @staticmethod
    def half(seq_len: int) -> int:
        """n = L / 2 (L must be even and >= 2)."""
        if seq_len < 2 or seq_len % 2:
            raise ValueError(f"config.data.seq_len={seq_len} must be even and >= 2 for pair_hash "
                             "(x half, y half)")
        return seq_len // 2

    def hash(self, x: np.ndarray) -> np.ndarray:
        """y `[N, n]` with y_i = f(x_i, x_{i+1}), x_{n+1} = x_1, for x `[N, n]`."""
        return self.table[x, np.roll(x, -1, axis=-1)]

    def sample(self, num_sequences: int, seq_len: int, seed: int | list[int]) -> np.ndarray:
        """`num_sequences` sequences int32 `[N, L]`: (x, f-hash of x), reversed if 'reversed'."""
        n = self.half(seq_len)
        x = np.random.default_rng(seed).integers(0, self.vocab_size, size=(num_sequences, n))
        seqs = np.concatenate([x, self.hash(x)], axis=1).astype(np.int32)
        return seqs[:, ::-1].copy() if self.direction == "reversed" else seqs

    def entropy_rate(self, seq_len: int = 2) -> float:
        """Nats per token: H(X_1:L) / L = log(K) / 2 (any even L)."""
        return self.sequence_entropy(seq_len) / seq_len

    def sequence_entropy(self, seq_len: int) -> float:
        """Exact H(X_1:L) = (L / 2) log K nats (the NELBO floor per sequence)."""
        return self.half(seq_len) * math.log(self.vocab_size)

    def exact_log_likelihood(self, seqs: np.ndarray) -> np.ndarray:
        """log p(seq) `[N]`: -(L/2) log K where the y half equals f of the x half, else -inf."""
        seqs = np.atleast_2d(np.asarray(seqs))
        if self.direction == "reversed":
            seqs = seqs[:, ::-1]
        n = self.half(seqs.shape[1])
        ok = np.all(self.hash(seqs[:, :n]) == seqs[:, n:], axis=1)
        return np.where(ok, -n * math.log(self.vocab_size), -np.inf)

    def x_positions(self, seq_len: int) -> np.ndarray:
        """The positions of the x half (decoded first in the easy order) in the written sequence."""
        n = self.half(seq_len)
        return np.arange(n, 2 * n) if self.direction == "reversed" else np.arange(n)

    def parents(self, seq_len: int) -> np.ndarray:
        """`[n, 3]` written positions (y_i, x_i, x_{i+1}) of each hashed token and its parents."""
        n = self.half(seq_len)
        i = np.arange(n)
        fwd = np.stack([n + i, i, (i + 1) % n], axis=1)
        return seq_len - 1 - fwd if self.direction == "reversed" else fwd


def load_splits(
    *, vocab_size: int, seq_len: int, num_train: int, num_eval: int, seed: int = 0,
    direction: str = "forward",
) -> tuple[PairHash, np.ndarray, np.ndarray]:
    """(corpus, train `[num_train, L]`, validation `[num_eval, L]`), all from `seed`."""
    corpus = PairHash.random(vocab_size, seed=seed, direction=direction)
    train = corpus.sample(num_train, seq_len, seed=[int(seed), 14, 1])
    valid = corpus.sample(num_eval, seq_len, seed=[int(seed), 14, 2])
    return corpus, train, valid
