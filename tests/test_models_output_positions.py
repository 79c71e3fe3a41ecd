"""`DiffusionTransformer(..., output_positions=pos)` returns the full logits at `pos`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models import DiffusionTransformer, example_inputs


def test_output_positions_equal_the_full_logits_there():
    B, L, K = 2, 6, 5
    model = DiffusionTransformer(num_classes=K, input_vocab_size=K + 1, num_layers=1, d_model=16,
                                 num_heads=2, cond_dim=8, dropout=0.0)
    params = jax.jit(model.init)(jax.random.key(0), **example_inputs(model, B, L))["params"]
    # Non-zero final layer (it is zero-initialised) so that the check is not vacuous.
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda x: x + 0.1 * rng.standard_normal(x.shape, np.float32), params)
    apply = jax.jit(model.apply)
    x = jax.random.randint(jax.random.key(2), (B, L), 0, K + 1)
    pos = jnp.array([[5, 0, 2], [1, 1, 4]], jnp.int32)
    for t_shape in [(B,), (B, L)]:  # per sequence, per position (the conditioning is gathered too)
        t = jax.random.uniform(jax.random.key(3), t_shape)
        full = apply({"params": params}, x, t)
        at = apply({"params": params}, x, t, output_positions=pos)
        assert at.shape == (B, 3, K)
        np.testing.assert_allclose(np.asarray(at), np.take_along_axis(np.asarray(full),
                                   np.asarray(pos)[..., None], axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="output_positions"):
        model.apply({"params": params}, x, t, output_positions=pos[0])
