"""Tests of the DiT / AR transformer and `get_model` (CPU, tiny sizes)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from discrete_diffusion.models import (
    SIZES,
    AutoregressiveTransformer,
    DiffusionTransformer,
    ar_inputs,
    example_inputs,
    get_model,
)
from discrete_diffusion.models.layers import apply_rotary

K = 13  # clean classes
B, L = 2, 16


def tiny(**kw) -> DiffusionTransformer:
    """A tiny masked-diffusion DiT (input vocabulary K + 1) with overrides."""
    fields = dict(num_classes=K, input_vocab_size=K + 1, **SIZES["tiny"], dropout=0.0)
    fields.update(kw)
    return DiffusionTransformer(**fields)


def random_params(model: DiffusionTransformer, seed: int = 0, scale: float = 0.1):
    """Random parameters (not the adaLN-zero init) of the right shapes, drawn with numpy.

    Built from `jax.eval_shape(model.init)`, so nothing is compiled: LayerNorm scales 1 + noise,
    everything else N(0, scale^2).
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), **example_inputs(model, B, L))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        noise = scale * rng.standard_normal(leaf.shape).astype(np.float32)
        return noise + 1.0 if path[-1].key == "scale" else noise

    return jax.tree_util.tree_map_with_path(draw, shapes)


def tokens(seed: int = 0, vocab: int = K + 1) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (B, L), 0, vocab, dtype=jnp.int32)


@pytest.fixture(scope="module")
def dit():
    model = tiny()
    return model, random_params(model)


@pytest.mark.parametrize("t_shape", [(B,), (B, L), ()])
def test_output_shape_and_dtype(dit, t_shape):
    model, params = dit
    t = jnp.full(t_shape, 0.3)
    logits = jax.jit(model.apply)(params, tokens(), t)
    assert logits.shape == (B, L, K)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))


def test_per_sequence_t_equals_broadcast_per_position_t(dit):
    model, params = dit
    t = jnp.array([0.2, 0.7])
    a = model.apply(params, tokens(), t)
    b = model.apply(params, tokens(), jnp.broadcast_to(t[:, None], (B, L)))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_per_position_t_modulates_per_token(dit):
    model, params = dit
    t = jnp.full((B, L), 0.5)
    a = model.apply(params, tokens(), t)
    b = model.apply(params, tokens(), t.at[:, 3].set(0.9))
    assert not np.allclose(a, b, atol=1e-4)


def test_bad_t_shape_raises(dit):
    model, params = dit
    with pytest.raises(ValueError, match="t must have shape"):
        model.apply(params, tokens(), jnp.zeros((B, L + 1)))


def test_init_predicts_uniform():
    # adaLN-zero: blocks start as the identity, the zero-init output layer gives zero logits.
    model = tiny(num_layers=1)
    params = jax.jit(model.init)(jax.random.key(0), **example_inputs(model, B, L))
    np.testing.assert_array_equal(model.apply(params, tokens(), jnp.full((B,), 0.4)), 0.0)


def test_bf16_compute_close_to_float32(dit):
    model, params = dit
    x, t = tokens(), jnp.array([0.1, 0.8])
    ref = model.apply(params, x, t)
    out = jax.jit(tiny(dtype=jnp.bfloat16).apply)(params, x, t)
    assert out.dtype == jnp.float32
    err = np.max(np.abs(out - ref)) / np.max(np.abs(ref))
    assert err < 0.05, err


def test_time_conditioning_off_ignores_t():
    model = tiny(time_conditioning=False)
    params = random_params(model)
    assert "time_embed" not in params["params"]
    x = tokens()
    a = model.apply(params, x, jnp.full((B,), 0.1))
    b = model.apply(params, x, jnp.full((B, L), 0.9))
    c = model.apply(params, x, None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_time_conditioning_on_depends_on_t(dit):
    model, params = dit
    a = model.apply(params, tokens(), jnp.full((B,), 0.1))
    b = model.apply(params, tokens(), jnp.full((B,), 0.9))
    assert not np.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="t is required"):
        model.apply(params, tokens(), None)


@pytest.mark.parametrize("causal", [True, False])
def test_causal_attention(causal):
    model = tiny(causal=causal, time_conditioning=False)
    params = random_params(model)
    x = tokens(1)
    i = 5
    y = x.at[:, i + 1 :].set((x[:, i + 1 :] + 1) % (K + 1))  # change every token after i
    a, b = model.apply(params, x), model.apply(params, y)
    prefix_diff = np.max(np.abs(a[:, : i + 1] - b[:, : i + 1]))
    if causal:
        assert prefix_diff < 1e-5, prefix_diff
        assert not np.allclose(a[:, i + 1 :], b[:, i + 1 :], atol=1e-4)
    else:
        assert prefix_diff > 1e-3, prefix_diff


def test_rotary_scores_depend_on_relative_position_only():
    # Same query/key vector at every position: rotated scores q_l . k_m are a function of l - m.
    q = jnp.broadcast_to(jax.random.normal(jax.random.key(0), (8,)), (1, L, 1, 8))
    k = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (8,)), (1, L, 1, 8))
    s = jnp.einsum("lh,mh->lm", apply_rotary(q)[0, :, 0], apply_rotary(k)[0, :, 0])
    for offset in (-3, 0, 2):
        diag = np.diagonal(s, offset)
        np.testing.assert_allclose(diag, diag[0], rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.diagonal(s, 0)[0], np.diagonal(s, 2)[0])


def test_rotary_equals_its_formula_with_the_angles_as_constants():
    """apply_rotary rotates the pair (i, i + Dh/2) at position l by l * base^(-2i/Dh) (checked
    against float64 NumPy), and its traced program holds the angles' cosine and sine as
    constants: no sin or cos left for XLA to fuse into every element's loop (layers.rotary_table)."""
    x = jax.random.normal(jax.random.key(0), (2, L, 3, 8))
    out = jax.jit(apply_rotary)(x)
    xs = np.asarray(x, np.float64)
    angle = np.arange(L)[:, None] * 10_000.0 ** (-np.arange(4) / 4)  # [L, 4]
    c, s_ = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]
    want = np.concatenate([xs[..., :4] * c - xs[..., 4:] * s_, xs[..., 4:] * c + xs[..., :4] * s_],
                          axis=-1)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)
    primitives = {e.primitive.name for e in jax.make_jaxpr(apply_rotary)(x).jaxpr.eqns}
    assert not primitives & {"sin", "cos"}, primitives


def test_model_is_not_permutation_equivariant(dit):
    # Without positions, a bidirectional transformer commutes with permutations of the tokens.
    model, params = dit
    x, t = tokens(2), jnp.full((B,), 0.5)
    perm = np.random.default_rng(0).permutation(L)
    permuted_out = model.apply(params, x[:, perm], t)
    out_permuted = model.apply(params, x, t)[:, perm]
    assert not np.allclose(permuted_out, out_permuted, atol=1e-4)


def test_dropout_only_in_training():
    model = tiny(dropout=0.3)
    params = random_params(model)
    x, t = tokens(), jnp.full((B,), 0.5)
    eval_a = model.apply(params, x, t)
    eval_b = model.apply(params, x, t, rngs={"dropout": jax.random.key(3)})
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a = model.apply(params, x, t, train=True, rngs={"dropout": jax.random.key(1)})
    train_b = model.apply(params, x, t, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(train_a, train_b, atol=1e-4)
    assert not np.allclose(train_a, eval_a, atol=1e-4)
    with pytest.raises(Exception, match="dropout"):
        model.apply(params, x, t, train=True)


def test_noise_input():
    model = tiny(input_vocab_size=K, noise_input=True)
    params = random_params(model)
    assert params["params"]["noise_embed"]["embedding"].shape == (K, model.d_model)
    assert params["params"]["match_embed"].shape == (model.d_model,)
    x, t = tokens(vocab=K), jnp.full((B,), 0.5)
    u = tokens(5, vocab=K)
    a = model.apply(params, x, t, noise=u)
    assert a.shape == (B, L, K)
    assert not np.allclose(a, model.apply(params, x, t, noise=x), atol=1e-4)
    with pytest.raises(ValueError, match="noise .* is required"):
        model.apply(params, x, t)
    plain = tiny(input_vocab_size=K)
    with pytest.raises(ValueError, match="noise_input=False"):
        plain.apply(random_params(plain), x, t, noise=u)


def test_label_conditioning():
    num_labels = 3
    model = tiny(num_labels=num_labels, time_conditioning=False)
    params = random_params(model)
    table = params["params"]["label_embed"]["embedding"]
    assert table.shape == (num_labels + 1, model.cond_dim)
    x = tokens()
    a = model.apply(params, x, label=jnp.array([0, 1]))
    b = model.apply(params, x, label=jnp.array([2, num_labels]))  # num_labels = null label
    assert a.shape == (B, L, K)
    assert not np.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="label is required"):
        model.apply(params, x)
    plain = tiny()
    with pytest.raises(ValueError, match="unconditional"):
        plain.apply(random_params(plain), x, jnp.full((B,), 0.5), label=jnp.array([0, 1]))


@pytest.mark.slow
def test_remat_same_params_and_gradients():
    model, remat = tiny(num_layers=1), tiny(num_layers=1, remat=True)
    params = random_params(model)
    shapes = jax.eval_shape(remat.init, jax.random.key(0), **example_inputs(remat, B, L))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(params)
    x, t = tokens(), jnp.full((B,), 0.5)

    def loss(p, m):
        return jnp.mean(jax.nn.log_softmax(m.apply(p, x, t))[..., 0])

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        grad(params, model),
        grad(params, remat),
    )


def test_parameter_names(dit):
    _, params = dit
    names = {
        jax.tree_util.keystr(path, simple=True, separator="/")
        for path, _ in jax.tree_util.tree_leaves_with_path(params["params"])
    }
    expected = {
        "token_embed/embedding",
        "time_embed/fc1/kernel",
        "time_embed/fc1/bias",
        "time_embed/fc2/kernel",
        "time_embed/fc2/bias",
        "final/norm/scale",
        "final/adaln/kernel",
        "final/adaln/bias",
        "final/out/kernel",
        "final/out/bias",
    }
    for i in range(SIZES["tiny"]["num_layers"]):
        expected |= {
            f"blocks_{i}/{n}"
            for n in (
                "norm1/scale",
                "norm2/scale",
                "adaln/kernel",
                "adaln/bias",
                "attn/qkv/kernel",
                "attn/out/kernel",
                "mlp/fc1/kernel",
                "mlp/fc1/bias",
                "mlp/fc2/kernel",
                "mlp/fc2/bias",
            )
        }
    assert names == expected


def test_ar_inputs_and_autoregressive_model():
    x0 = jnp.arange(2 * 5, dtype=jnp.int32).reshape(2, 5)
    np.testing.assert_array_equal(ar_inputs(x0, bos_id=99), [[99, 0, 1, 2, 3], [99, 5, 6, 7, 8]])
    model = AutoregressiveTransformer(num_classes=K, input_vocab_size=K + 1, **SIZES["tiny"])
    assert model.causal and not model.time_conditioning
    params = random_params(model)
    x = tokens(vocab=K)
    logits = model.apply(params, ar_inputs(x, bos_id=K))
    assert logits.shape == (B, L, K)
    # logits[:, i] sees x[:, :i] only: changing x[:, i] leaves logits[:, :i + 1] unchanged.
    logits2 = model.apply(params, ar_inputs(x.at[:, 4].set((x[:, 4] + 1) % K), bos_id=K))
    np.testing.assert_allclose(logits[:, :5], logits2[:, :5], atol=1e-5)


def model_config(**fields) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = ml_collections.ConfigDict({"name": "dit", "size": "tiny", **fields})
    return config


def test_get_model_fields():
    model = get_model(model_config(dtype="bfloat16", noise_input=True, num_layers=3), K, K)
    assert isinstance(model, DiffusionTransformer)
    assert (model.num_layers, model.dtype) == (3, jnp.bfloat16)
    assert model.d_model == SIZES["tiny"]["d_model"]
    assert model.noise_input and model.time_conditioning and model.dropout == 0.1
    ar = get_model(model_config(name="ar"), K, K + 1)
    assert isinstance(ar, AutoregressiveTransformer) and ar.causal and not ar.time_conditioning
    custom = get_model(model_config(size="custom", num_layers=1, d_model=64, num_heads=2), K, K)
    assert (custom.num_layers, custom.d_model, custom.num_heads, custom.cond_dim) == (1, 64, 2, 128)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(size="huge"), r"config.model.size='huge' is not one of \['tiny', 'small'"),
        (dict(name="gpt"), r"config.model.name='gpt' is not one of \['dit', 'ar'\]"),
        (dict(dtype="float16"), r"config.model.dtype='float16' is not one of"),
        (dict(size="custom", d_model=64), r"config.model.num_layers must be set"),
        (dict(num_heads=3), r"config.model.d_model=128 must be divisible by config.model.num_h"),
        (dict(name="ar", time_conditioning=True), r"config.model.time_conditioning"),
    ],
)
def test_get_model_errors_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        get_model(model_config(**fields), K, K + 1)


def test_small_parameter_count():
    config = model_config(size="small")
    vocab = 50257
    model = get_model(config, num_classes=vocab, input_vocab_size=vocab + 1)
    shapes = jax.eval_shape(model.init, jax.random.key(0), **example_inputs(model, 1, 8))
    count = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))
    assert 150e6 < count < 200e6, count  # ~170M with untied embeddings (MDLM / Duo)


def test_soft_input_embedding_bag_and_dense_equal_the_id_path(dit):
    """Duo's soft input reads the same token_embed table: one-hot weights (bag of 1 or of k rows
    with zero weights elsewhere, or dense [B, L, V]) give the id path's logits, and a random bag
    equals its dense scatter."""
    model, params = dit
    V = model.input_vocab_size
    x, t = tokens(3), jnp.full((B,), 0.3)
    ref = model.apply(params, x, t)
    one = model.apply(params, None, t, soft_ids=x[..., None],
                      soft_weights=jnp.ones((B, L, 1)))
    np.testing.assert_allclose(one, ref, atol=1e-5)
    other = (x[..., None] + jnp.arange(1, 4)) % V  # [B, L, 3] other ids with zero weight
    ids = jnp.concatenate([other[..., :1], x[..., None], other[..., 1:]], -1)
    w = jax.nn.one_hot(jnp.ones((B, L), jnp.int32), 4)
    bag = model.apply(params, None, t, soft_ids=ids, soft_weights=w)
    np.testing.assert_allclose(bag, ref, atol=1e-5)
    dense = model.apply(params, None, t, soft_weights=jax.nn.one_hot(x, V))
    np.testing.assert_allclose(dense, ref, atol=1e-5)
    # a random bag of distinct ids = the dense input with those weights scattered
    ids = jnp.stack([x, (x + 1) % V, (x + 5) % V], -1)
    w = jax.nn.softmax(jax.random.normal(jax.random.key(1), (B, L, 3)), -1)
    bag = model.apply(params, None, t, soft_ids=ids, soft_weights=w)
    scattered = jnp.sum(jax.nn.one_hot(ids, V) * w[..., None], -2)
    dense = model.apply(params, None, t, soft_weights=scattered)
    np.testing.assert_allclose(bag, dense, atol=1e-5)
    assert not np.allclose(bag, ref, atol=1e-3)
    with pytest.raises(ValueError, match="either x_t or soft_weights"):
        model.apply(params, x, t, soft_ids=ids, soft_weights=w)
    with pytest.raises(ValueError, match="dense soft_weights must be"):
        model.apply(params, None, t, soft_weights=w)


def test_latent_dim_zero_is_todays_network_and_latent_enters_additively():
    """latent_dim=0 builds the same parameter tree and bit-identical logits as a network built
    without the field; with latent_dim=Z the latent embedding is one more term of the adaLN
    conditioning, so zeroing its last layer gives back those logits bit for bit, while a
    nonzero embedding makes each sequence's logits depend on its own z only."""
    Z = 3
    plain, zero, latent = tiny(time_conditioning=True), tiny(latent_dim=0), tiny(latent_dim=Z)
    params = random_params(plain)
    assert jax.tree_util.tree_structure(random_params(zero)) == jax.tree_util.tree_structure(params)
    x, t = tokens(), jnp.array([0.3, 0.7])
    ref = plain.apply(params, x, t)
    np.testing.assert_array_equal(np.asarray(zero.apply(params, x, t)), np.asarray(ref))
    lp = random_params(latent, seed=1)
    assert set(lp["params"]) - set(params["params"]) == {"latent_embed"}
    assert lp["params"]["latent_embed"]["fc1"]["kernel"].shape == (Z, latent.cond_dim)
    merged = {"params": {**params["params"], "latent_embed": lp["params"]["latent_embed"]}}
    z = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]])
    off = jax.tree_util.tree_map(jnp.zeros_like, merged["params"]["latent_embed"]["fc2"])
    silent = {"params": {**merged["params"],
                         "latent_embed": {**merged["params"]["latent_embed"], "fc2": off}}}
    np.testing.assert_array_equal(np.asarray(latent.apply(silent, x, t, latent=z)), np.asarray(ref))
    a = latent.apply(merged, x, t, latent=z)
    b = latent.apply(merged, x, t, latent=z.at[1].set(-z[1]))
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.allclose(a[1], b[1], atol=1e-4)
    with pytest.raises(ValueError, match="latent z"):
        latent.apply(merged, x, t)
    with pytest.raises(ValueError, match="latent_dim=0"):
        plain.apply(params, x, t, latent=z)
    config = ml_collections.ConfigDict({"model": {"name": "dit", "size": "tiny", "latent_dim": Z}})
    assert get_model(config, K, K + 1).latent_dim == Z
    config.model.latent_dim = -1
    with pytest.raises(ValueError, match="config.model.latent_dim"):
        get_model(config, K, K + 1)


def test_learned_positions_break_the_all_masked_symmetry():
    """With rotary positions only, an all-masked input gives every position the same
    output (identical q, k, v rows: attention returns v whatever the rotary scores); with
    'rotary+learned' a zero table changes nothing, bit for bit, and perturbing the table makes
    two positions' outputs differ."""
    x = jnp.full((B, L), K, jnp.int32)  # all masked (mask id K)
    t = jnp.array([0.3, 0.7])
    rotary, learned = tiny(), tiny(pos_embedding="rotary+learned")
    params = random_params(rotary)
    ref = np.asarray(rotary.apply(params, x, t))
    np.testing.assert_allclose(ref[:, 3], ref[:, 11], atol=1e-5)
    np.testing.assert_allclose(ref[:, 0], ref[:, L - 1], atol=1e-5)
    table = jnp.zeros((L, SIZES["tiny"]["d_model"]), jnp.float32)
    zero = {"params": {**params["params"], "pos_embed": table}}
    np.testing.assert_array_equal(np.asarray(learned.apply(zero, x, t)), ref)
    noise = 0.5 * jax.random.normal(jax.random.key(3), table.shape)
    moved = {"params": {**params["params"], "pos_embed": table + noise}}
    out = np.asarray(learned.apply(moved, x, t))
    assert np.abs(out[:, 3] - out[:, 11]).max() > 1e-3
    assert np.abs(out[:, 0] - out[:, L - 1]).max() > 1e-3
    # output_positions (the samplers' few-position calls) read the same positions of the full input
    pos = jnp.array([[11, 3], [0, 15]], jnp.int32)
    at = np.asarray(learned.apply(moved, x, t, output_positions=pos))
    np.testing.assert_allclose(at, np.take_along_axis(out, np.asarray(pos)[..., None], axis=1),
                               atol=1e-5)
    # soft inputs get the table too: one-hot weights give the id path
    soft = jax.nn.one_hot(x, K + 1)
    np.testing.assert_allclose(np.asarray(learned.apply(moved, None, t, soft_weights=soft)), out,
                               atol=1e-5)


def test_learned_position_parameter_only_when_asked():
    """'rotary' (the default) has no pos_embed and the same tree as a network built without the
    field; 'rotary+learned' adds pos_embed [max_len, D] (normal, std 0.02) and leaves every other
    initial parameter unchanged, bit for bit. get_model takes max_len from the data's seq_len."""
    x_in = example_inputs(tiny(), B, L)
    base = tiny().init(jax.random.key(0), **x_in)["params"]
    rot = tiny(pos_embedding="rotary").init(jax.random.key(0), **x_in)["params"]
    assert "pos_embed" not in base and "pos_embed" not in rot
    jax.tree_util.tree_map(np.testing.assert_array_equal, rot, base)
    lp = tiny(pos_embedding="rotary+learned").init(jax.random.key(0), **x_in)["params"]
    D = SIZES["tiny"]["d_model"]
    assert set(lp) - set(base) == {"pos_embed"} and lp["pos_embed"].shape == (L, D)
    assert 0.01 < float(jnp.std(lp["pos_embed"])) < 0.03
    jax.tree_util.tree_map(np.testing.assert_array_equal,
                           {k: v for k, v in lp.items() if k != "pos_embed"}, base)
    # the table's length is max_len (the data's seq_len): shorter inputs read its first rows,
    # longer ones raise
    m = tiny(pos_embedding="rotary+learned", max_len=24)
    p24 = m.init(jax.random.key(0), **x_in)
    assert p24["params"]["pos_embed"].shape == (24, D)
    assert m.apply(p24, **x_in).shape == (B, L, K)
    with pytest.raises(ValueError, match="sequence length 32 exceeds the 24 rows"):
        m.apply(p24, **example_inputs(m, B, 32))
    config = model_config(pos_embedding="rotary+learned")
    config.data = ml_collections.ConfigDict({"name": "mnist", "seq_len": None})
    assert get_model(config, 2, 3).max_len == 784  # the dataset's default seq_len
    config.data.name, config.data.seq_len = "synthetic", 40
    assert get_model(config, K, K + 1).max_len == 40
    assert get_model(model_config(), K, K + 1).pos_embedding == "rotary"
    # sharding: the table follows a rule (the denoiser's and VADD's encoder's)
    from jax.sharding import PartitionSpec as P

    from discrete_diffusion import sharding

    assert sharding.spec_for("pos_embed", (784, D)) == P(None, "fsdp")
    assert sharding.spec_for("encoder/pos_embed", (784, D)) == P(None, "fsdp")


def test_bad_pos_embedding_raises_naming_the_field():
    from configs import base as base_config
    from discrete_diffusion import config_validation

    with pytest.raises(ValueError, match=r"config.model.pos_embedding='learned' is not one of "
                                         r"\['rotary', 'rotary\+learned'\]"):
        get_model(model_config(pos_embedding="learned"), K, K + 1)
    with pytest.raises(ValueError, match=r"pos_embedding='absolute' \(config.model.pos_embedding\)"):
        tiny(pos_embedding="absolute").init(jax.random.key(0), **example_inputs(tiny(), B, L))
    config = base_config.get_config()
    config.model.pos_embedding = "sinusoidal"
    with pytest.raises(ValueError, match=r"config.model.pos_embedding='sinusoidal' is not one of "
                                         r"\['rotary', 'rotary\+learned'\]"):
        config_validation.validate(config)


def test_vadd_encoder_gets_the_learned_positions():
    """configs/mnist_vadd.py asks for 'rotary+learned': both the denoiser and VADD's recognition
    model have a [784, D] table (shapes only, nothing compiled); the MDLM baseline of the same
    config too."""
    from configs import mnist_vadd
    from discrete_diffusion import methods

    config = mnist_vadd.get_config()
    assert config.model.pos_embedding == "rotary+learned"
    config.process.num_classes = 2  # set from the data when training
    method = methods.get(config, 2)
    batch = {"tokens": jnp.zeros((1, 784), jnp.int32)}
    shapes = jax.eval_shape(method.init, jax.random.key(0), batch)
    D = config.model.d_model
    assert shapes["network"]["pos_embed"].shape == (784, D)
    assert shapes["encoder"]["pos_embed"].shape == (784, D)
    config.model.pos_embedding = "rotary"
    shapes = jax.eval_shape(methods.get(config, 2).init, jax.random.key(0), batch)
    assert "pos_embed" not in shapes["network"] and "pos_embed" not in shapes["encoder"]
    config.model.pos_embedding = "rotary+learned"
    config.method.name, config.model.latent_dim = "diffusion", 0  # the MDLM baseline
    shapes = jax.eval_shape(methods.get(config, 2).init, jax.random.key(0), batch)
    assert shapes["network"]["pos_embed"].shape == (784, D)
