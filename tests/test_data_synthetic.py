"""Synthetic Markov chain: exact entropies and likelihoods against enumeration and Monte Carlo."""

import itertools

import numpy as np
import pytest

from discrete_diffusion.data import synthetic


def test_chain_is_a_valid_sparse_stationary_chain():
    chain = synthetic.MarkovChain.random(16, support=3, concentration=0.5, seed=1)
    P, pi = chain.transition, chain.initial
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    assert ((P > 0).sum(1) <= 3).all()
    np.testing.assert_allclose(pi @ P, pi, atol=1e-12)
    assert (pi > 0).all()  # irreducible
    assert chain.entropy_rate() <= np.log(3) + 1e-9 < np.log(16)


def test_seeded_and_deterministic():
    a = synthetic.load_splits(vocab_size=8, seq_len=10, num_train=20, num_eval=5, seed=3)
    b = synthetic.load_splits(vocab_size=8, seq_len=10, num_train=20, num_eval=5, seed=3)
    c = synthetic.load_splits(vocab_size=8, seq_len=10, num_train=20, num_eval=5, seed=4)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[1][:5], a[2])  # train and validation are different draws
    assert a[1].dtype == np.int32 and a[1].shape == (20, 10) and a[2].shape == (5, 10)


@pytest.mark.parametrize("K,L", [(3, 4), (4, 3)])
def test_exact_log_likelihood_matches_enumeration(K, L):
    chain = synthetic.MarkovChain.random(K, support=2, seed=K)
    seqs = np.array(list(itertools.product(range(K), repeat=L)))
    logp = chain.exact_log_likelihood(seqs)
    # Brute force: product of the chain's probabilities along each sequence.
    brute = np.array(
        [
            chain.initial[s[0]]
            * np.prod([chain.transition[a, b] for a, b in itertools.pairwise(s)])
            for s in seqs
        ]
    )
    np.testing.assert_allclose(np.exp(logp), brute, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(brute.sum(), 1.0, atol=1e-12)
    p = brute[brute > 0]
    np.testing.assert_allclose(-(p * np.log(p)).sum(), chain.sequence_entropy(L), rtol=1e-10)


def test_entropy_rate_matches_monte_carlo():
    """Mean -log p(x)/L of sampled sequences equals the exact H(X_1:L)/L within 4 std errors."""
    L, N = 64, 4000
    chain, train, _ = synthetic.load_splits(
        vocab_size=24, seq_len=L, num_train=N, num_eval=1, support=4, seed=0
    )
    nll = -chain.exact_log_likelihood(train) / L
    tolerance = 4 * nll.std() / np.sqrt(N)
    assert abs(nll.mean() - chain.sequence_entropy(L) / L) < tolerance
    # Per-token conditional entropy (positions >= 2) against the entropy rate itself.
    cond = -np.log(chain.transition[train[:, :-1], train[:, 1:]]).mean(1)
    assert abs(cond.mean() - chain.entropy_rate()) < 4 * cond.std() / np.sqrt(N)
    # The empirical first-token frequencies follow the stationary distribution.
    freq = np.bincount(train[:, 0], minlength=24) / N
    assert np.abs(freq - chain.initial).max() < 0.04


def test_bad_settings():
    with pytest.raises(ValueError, match="synthetic_support"):
        synthetic.MarkovChain.random(8, support=9)
    with pytest.raises(ValueError, match="synthetic_vocab_size"):
        synthetic.MarkovChain.random(1)
    with pytest.raises(ValueError, match="synthetic_concentration"):
        synthetic.MarkovChain.random(8, concentration=0.0)
    chain = synthetic.MarkovChain.random(4, support=2)
    with pytest.raises(ValueError, match="token ids"):
        chain.exact_log_likelihood(np.array([[0, 4]]))
