"""`DiffusionTransformer(..., output_positions=pos)` returns the full logits at `pos`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion.models import DiffusionTransformer, example_inputs


@pytest.mark.parametrize("per_position_t", [False, True])
def test_output_positions_equal_the_full_logits_there(per_position_t):
    B, L, K = 2, 6, 5
    model = DiffusionTransformer(num_classes=K, input_vocab_size=K + 1, num_layers=1, d_model=16,
                                 num_heads=2, cond_dim=8, dropout=0.0)
    params = model.init(jax.random.key(0), **example_inputs(model, B, L))["params"]
    # Non-zero final layer (it is zero-initialised) so that the check is not vacuous.
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), params)
    x = jax.random.randint(jax.random.key(2), (B, L), 0, K + 1)
    t = jax.random.uniform(jax.random.key(3), (B, L) if per_position_t else (B,))
    full = model.apply({"params": params}, x, t)
    pos = jnp.array([[5, 0, 2], [1, 1, 4]], jnp.int32)
    at = model.apply({"params": params}, x, t, output_positions=pos)
    assert at.shape == (B, 3, K)
    np.testing.assert_allclose(np.asarray(at), np.take_along_axis(np.asarray(full),
                               np.asarray(pos)[..., None], axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="output_positions"):
        model.apply({"params": params}, x, t, output_positions=pos[0])
