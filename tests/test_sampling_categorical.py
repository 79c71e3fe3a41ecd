"""The categorical sampler is exact far into the tail; jax.random.categorical's float32 default
is not. Also temperature / top-k / nucleus."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from discrete_diffusion.sampling import categorical as cat

FALSE_ALARM = 1e-6  # two-sided false-alarm rate of every statistical test in this file


def _binomial_interval(n, q, alpha=FALSE_ALARM):
    return stats.binom.ppf(alpha / 2, n, q), stats.binom.isf(alpha / 2, n, q)


def test_exponential_noise_is_exp1():
    bits = jax.random.bits(jax.random.key(0), (2, 200_000), dtype=jnp.uint32)
    e = np.asarray(cat.exponential_from_bits(bits), np.float64)
    assert stats.kstest(e, "expon").pvalue > FALSE_ALARM


def test_small_distribution_frequencies():
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.04, 0.01])
    draws = cat.categorical(jax.random.key(1), jnp.log(jnp.asarray(p))[None].repeat(100_000, 0))
    counts = np.bincount(np.asarray(draws), minlength=len(p))
    assert stats.chisquare(counts, 100_000 * p).pvalue > FALSE_ALARM


def test_class_of_probability_1e9_among_100k_is_drawn_at_the_right_rate():
    """Importance-sampled test of the tail. V = 10^5 classes (twice GPT-2's vocabulary; 10^6 took
    a minute of CI): p_0 = 1e-9 (the tail class),
    p_1 = 0.999, the rest share the remainder. Drawing class 0 needs its noise E_0 < p_0 M with
    M = min_{j>0} E_j / p_j ~ Exp(1 - p_0); this happens for U_0 = 1 - exp(-E_0) ~ 1e-9, i.e. in a
    region of probability ~1e-9 of its 64 random bits, which plain sampling would need ~1e11
    draws to visit. We draw those bits *conditioned* on U_0 < c = 2^-29 (top 29 bits zero),
    all other bits unconditioned; for an exact sampler, E_0 = -log1p(-U_0) is then uniform on
    [0, c) up to O(c) and
        P(class 0 | U_0 < c) = p_0 / ((1 - p_0) c) (1 - exp(-(1 - p_0) c / p_0)) = 0.4535...
    (c P(class 0 | U_0 < c) = 0.84 p_0 of the class's total rate p_0 comes from this region).
    A binomial test with false-alarm rate 1e-6 checks the count.
    """
    V, p0, p1 = 100_000, 1e-9, 0.999
    p = np.full(V, (1.0 - p0 - p1) / (V - 2))
    p[0], p[1] = p0, p1
    logits = jnp.asarray(np.log(p), jnp.float32)
    n_draws, c_bits = 200, 29
    q = p0 / ((1 - p0) * 2.0**-c_bits) * (1 - np.exp(-(1 - p0) * 2.0**-c_bits / p0))

    @jax.jit
    def draw(key):
        bits = jax.random.bits(key, (2, V), dtype=jnp.uint32)
        bits = bits.at[0, 0].set(bits[0, 0] >> c_bits)  # U_0 < 2^-29: the conditioning
        return cat.categorical_from_bits(bits, logits)

    keys = jax.random.split(jax.random.key(2), n_draws)
    hits = sum(int(draw(k) == 0) for k in keys)
    lo, hi = _binomial_interval(n_draws, q)
    assert lo <= hits <= hi, (hits, n_draws * q)


def test_float32_jax_categorical_cannot_draw_that_class():
    """jax.random.categorical's default float32 Gumbel noise lies in [g_min, g_max]: from its
    23-bit uniform, g_max = -log(-log(1 - 2^-23)) ~ 15.9 and g_min = -log(-log(tiny)) ~ -4.5.
    Class 0 (log p_0 - log p_1 = -20.72) needs a Gumbel gap above 20.72 > g_max - g_min, so its
    probability under jax's float32 sampler is exactly 0 (true value 1e-9)."""
    u = np.asarray(jax.random.uniform(jax.random.key(5), (2_000_000,), dtype=jnp.float32))
    np.testing.assert_array_equal(u * 2**23, np.round(u * 2**23))  # a 23-bit grid below 1
    g_max = -np.log(-np.log(1 - 2.0**-23))
    g_min = -np.log(-np.log(np.float64(np.finfo(np.float32).tiny)))
    assert g_max - g_min < np.log(0.999 / 1e-9)
    g = jax.random.gumbel(jax.random.key(3), (2_000_000,), dtype=jnp.float32)
    assert float(g.max()) <= g_max + 1e-4 and float(g.min()) >= g_min - 1e-4
    # Our noise reaches the needed gap: the Gumbel of U = 2^-64 (the smallest U) is ~44.4.
    e_min = cat.exponential_from_bits(jnp.zeros((2, 1), jnp.uint32))
    assert float(-jnp.log(e_min[0])) > 44.0


def test_temperature_topk_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.15, 0.1]]))
    hot = np.exp(cat.transform_logits(logits, temperature=2.0))
    expect = np.sqrt([0.5, 0.25, 0.15, 0.1])
    np.testing.assert_allclose(hot[0], expect / expect.sum(), atol=1e-6)
    top2 = np.exp(cat.transform_logits(logits, top_k=2))
    np.testing.assert_allclose(top2[0], [2 / 3, 1 / 3, 0, 0], atol=1e-6)
    nucleus = np.exp(cat.transform_logits(logits, top_p=0.8))  # 0.5 + 0.25 < 0.8 -> keep 3
    np.testing.assert_allclose(nucleus[0], [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0], atol=1e-6)
    exact = np.exp(cat.transform_logits(logits, top_p=0.75))  # 0.5 + 0.25 reaches 0.75 -> keep 2
    np.testing.assert_allclose(exact[0], [2 / 3, 1 / 3, 0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="config.sampler.temperature"):
        cat.transform_logits(logits, temperature=0.0)
    with pytest.raises(ValueError, match="config.sampler.top_p"):
        cat.transform_logits(logits, top_p=1.5)


def test_minus_inf_logits_are_never_drawn():
    logits = jnp.array([[-jnp.inf, 0.0, -jnp.inf, -30.0]]).repeat(50_000, 0)
    draws = np.asarray(cat.categorical(jax.random.key(4), logits))
    assert set(np.unique(draws)) <= {1, 3}


def _tail_rate(p, c_bits):
    """P(class of relative mass p wins | its U < 2^-c_bits), the formula of the test above."""
    c = 2.0**-c_bits
    return p / ((1 - p) * c) * (1 - np.exp(-(1 - p) * c / p))


def test_exact_methods_frequencies_with_partial_blocks():
    """Both exact draws (and `categorical_probs`) reproduce p, also when V = 7 is not a multiple of
    the block size (2) and some classes are impossible (zero mass, -inf logits)."""
    vocab, n = 7, 40_000
    p = np.random.default_rng(vocab).dirichlet(np.full(vocab, 0.5))
    p[[1, vocab - 1]] = 0.0
    p /= p.sum()
    logits = jnp.log(jnp.asarray(p, jnp.float32))[None].repeat(n, 0)
    draws = jax.jit(lambda key, lg: (
        cat.categorical(key, lg), cat.categorical_probs(jax.random.fold_in(key, 1), jnp.exp(lg)),
        cat.categorical(jax.random.fold_in(key, 2), lg, method="exact_dense")))(
            jax.random.key(1), logits)
    keep = p > 0
    for d in draws:
        counts = np.bincount(np.asarray(d), minlength=vocab)
        assert counts[1] == 0 and counts[vocab - 1] == 0 and len(counts) == vocab
        assert stats.chisquare(counts[keep], n * p[keep]).pvalue > FALSE_ALARM


@pytest.mark.parametrize("same_block", [False, True])
def test_blocked_draw_resolves_a_class_of_probability_1e9(same_block):
    """The tail test above for the two-level race (2), V = 4096 in blocks of 64, with 64 random bits
    conditioned on U < 2^-29 (see that test). same_block=False: class 0 (p0 = 1e-9) alone in its
    block, which it wins in the block race at rate `_tail_rate(p0)`; same_block=True: class 0 shares
    block 0 with the leading class (p1 = 0.999), wins the block race with block 0's mass S_0 and the
    race inside it at `_tail_rate(p0 / S_0)`. float32 Gumbel-max cannot draw it at all (above)."""
    V, B, p0, p1, c_bits, n_draws = 4096, 64, 1e-9, 0.999, 29, 400
    p = np.zeros(V)
    lead = 1 if same_block else B
    rest = np.arange(lead + 1, V) if same_block else np.arange(B + 1, V)
    p[0], p[lead] = p0, p1
    p[rest] = (1.0 - p0 - p1) / len(rest)
    logits = jnp.log(jnp.asarray(p, jnp.float32))
    blocks = cat._blocks(logits, B, -jnp.inf)
    lse = cat.block_logsumexp(blocks)

    def draw(key):
        k1, k2 = jax.random.split(key)
        outer = jax.random.bits(k1, (2, V // B), dtype=jnp.uint32)
        inner = jax.random.bits(k2, (2, B), dtype=jnp.uint32)
        if same_block:
            inner = inner.at[0, 0].set(inner[0, 0] >> c_bits)
        else:
            outer = outer.at[0, 0].set(outer[0, 0] >> c_bits)
        return cat.blocked_from_bits(outer, inner, blocks, lse)

    hits = int(jnp.sum(jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(3), n_draws)) == 0))
    s0 = p[:B].sum()
    q = s0 * _tail_rate(p0 / s0, c_bits) if same_block else _tail_rate(p0, c_bits)
    lo, hi = _binomial_interval(n_draws, q)
    assert lo <= hits <= hi, (hits, n_draws * q)


def test_block_size_and_bad_method():
    assert [cat.block_size(v) for v in (1, 3, 32768, 50257)] == [1, 2, 256, 256]
    with pytest.raises(ValueError, match="config.sampler.categorical"):
        cat.categorical(jax.random.key(0), jnp.zeros((2, 3)), method="float64")
