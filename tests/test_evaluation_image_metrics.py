"""Image metrics: the bpd formula, the Fréchet distance against closed forms, and the FD-MLP
classifier (accuracy, caching, real-vs-real far below real-vs-noise)."""

import math

import numpy as np
import pytest
import scipy.linalg

from discrete_diffusion.data import images
from discrete_diffusion.evaluation import image_metrics as im


def test_bits_per_dim():
    D = 64
    assert im.bits_per_dim(D * math.log(2.0), D) == pytest.approx(1.0)
    assert isinstance(im.bits_per_dim(3.0, D), float)
    nelbo = np.array([100.0, 200.0])
    np.testing.assert_allclose(im.bits_per_dim(nelbo, 784), nelbo / (784 * math.log(2.0)))
    with pytest.raises(ValueError):
        im.bits_per_dim(1.0, 0)


def test_frechet_distance_closed_form_2d():
    """Non-commuting 2x2 covariances: tr((A B)^{1/2}) = sqrt(tr(A B) + 2 sqrt(det A det B))."""
    A = np.array([[2.0, 0.7], [0.7, 1.0]])
    B = np.array([[0.5, -0.2], [-0.2, 1.5]])
    mu_a, mu_b = np.array([1.0, -1.0]), np.array([0.0, 0.5])
    tr_sqrt = math.sqrt(np.trace(A @ B) + 2 * math.sqrt(np.linalg.det(A) * np.linalg.det(B)))
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(A) + np.trace(B) - 2 * tr_sqrt
    assert im.frechet_distance(mu_a, A, mu_b, B) == pytest.approx(expected, rel=1e-10)
    assert im.frechet_distance(mu_a, A, mu_a, A) == pytest.approx(0.0, abs=1e-10)
    # Diagonal: sum (sqrt(a_i) - sqrt(b_i))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    assert im.frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(
        np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def test_frechet_distance_matches_sqrtm():
    rng = np.random.default_rng(0)
    F = 16
    xa, xb = rng.normal(size=(F, F)), rng.normal(size=(F, F))
    A, B = xa @ xa.T / F, xb @ xb.T / F + 0.1 * np.eye(F)
    mu_a, mu_b = rng.normal(size=F), rng.normal(size=F)
    ref = np.sum((mu_a - mu_b) ** 2) + np.trace(A + B) - 2 * np.trace(scipy.linalg.sqrtm(A @ B)).real
    assert im.frechet_distance(mu_a, A, mu_b, B) == pytest.approx(ref, rel=1e-8)


def test_gaussian_fit():
    f = np.random.default_rng(0).normal(size=(50, 3))
    mu, cov = im.gaussian_fit(f)
    np.testing.assert_allclose(mu, f.mean(0))
    np.testing.assert_allclose(cov, np.cov(f.T))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("fd_cache")
    return cache, im.load_classifier("digits", cache)


def test_classifier_accuracy_and_cache(trained):
    cache, clf = trained
    print(f"digits FD-MLP classifier held-out accuracy {clf.accuracy:.4f}")
    assert clf.accuracy > 0.9
    _, valid = images.load_splits("digits")
    assert np.mean(clf.predict(valid.tokens) == valid.labels) == pytest.approx(clf.accuracy)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    again = im.load_classifier("digits", cache)  # loaded, not retrained
    assert again.accuracy == clf.accuracy
    np.testing.assert_array_equal(again.features(valid.tokens), clf.features(valid.tokens))
    assert clf.features(valid.tokens[:5]).shape == (5, 64)
    assert sorted(clf.params) == ["b0", "b1", "b2", "w0", "w1", "w2"]


def test_frechet_real_halves_far_below_noise(trained):
    _, clf = trained
    train, valid = images.load_splits("digits")
    data = np.concatenate([train.tokens, valid.tokens])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(data))
    a, b = data[perm[: len(data) // 2]], data[perm[len(data) // 2:]]
    fd_halves = im.frechet_feature_distance(clf, a, b)
    fd_noise = im.frechet_feature_distance(clf, a, rng.integers(0, 17, a.shape))
    shuffled = np.take_along_axis(a, rng.random(a.shape).argsort(axis=1), axis=1)  # pixels permuted
    fd_shuffled = im.frechet_feature_distance(clf, a, shuffled)
    print(f"FD-MLP halves {fd_halves:.3f}, shuffled pixels {fd_shuffled:.3f}, noise {fd_noise:.3f}")
    assert fd_halves < 0.05 * fd_shuffled
    assert fd_halves < 0.05 * fd_noise


def test_bad_inputs(trained):
    _, clf = trained
    with pytest.raises(ValueError, match=r"\[N, 64\]"):
        clf.features(np.zeros((2, 63), np.int32))
    with pytest.raises(ValueError, match="lie in"):
        clf.features(np.full((2, 64), 17, np.int32))
