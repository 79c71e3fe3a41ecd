"""discrete_diffusion.checks: static (trace-time) and eager value checks of public inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from discrete_diffusion import checks


def test_check_logits_accepts_the_expected_shape_and_float_dtypes():
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        checks.check_logits(jnp.zeros((2, 4, 5), dtype), (2, 4), 5)


def test_check_logits_names_expected_k_and_the_config_field():
    with pytest.raises(ValueError, match=r"K = 5 .*config\.process\.num_classes") as e:
        checks.check_logits(jnp.zeros((2, 4, 8)), (2, 4), 5)
    assert "[2, 4, 8]" in str(e.value) and "[2, 4, 5]" in str(e.value)
    with pytest.raises(ValueError, match=r"expected \[N, L, K\] = \[2, 4, 5\]"):
        checks.check_logits(jnp.zeros((2, 5)), (2, 4), 5)
    with pytest.raises(TypeError, match="floating dtype"):
        checks.check_logits(jnp.zeros((2, 4, 5), jnp.int32), (2, 4), 5)
    with pytest.raises(TypeError, match="must return an array"):
        checks.check_logits([[0.0]], (2, 4), 5)


def test_check_logits_runs_at_trace_time_without_callbacks():
    def f(x):
        logits = jnp.zeros((*x.shape, 3)) + x[..., None]
        checks.check_logits(logits, x.shape, 3)
        return logits

    jaxpr = str(jax.make_jaxpr(f)(jnp.zeros((2, 4))))
    assert "callback" not in jaxpr
    with pytest.raises(ValueError, match="K = 4"):
        jax.jit(lambda x: checks.check_logits(jnp.zeros((*x.shape, 3)), x.shape, 4))(
            jnp.zeros((2, 4))
        )


def test_check_token_ids_range_dtype_and_where():
    checks.check_token_ids(np.array([0, 4]), 5, what="ids")
    with pytest.raises(ValueError, match=r"ids: ids must lie in \[0, 5\).*found 99"):
        checks.check_token_ids(np.array([0, 99]), 5, what="ids")
    with pytest.raises(ValueError, match="found -1"):
        checks.check_token_ids(jnp.array([-1, 0]), 5, what="ids")
    with pytest.raises(TypeError, match="integer token ids, got dtype float32"):
        checks.check_token_ids(np.array([0.0, 1.0], np.float32), 5, what="ids")
    # Only the entries where `where` is True are checked; `where` may broadcast.
    checks.check_token_ids(np.array([99, 1]), 5, what="ids", where=np.array([False, True]))
    checks.check_token_ids(np.array([99, 1]), 5, what="ids", where=np.array([[False, True]] * 3))


def test_check_token_ids_skips_values_of_tracers():
    @jax.jit
    def f(x):
        checks.check_token_ids(x, 5, what="ids")
        return x

    np.testing.assert_array_equal(f(jnp.array([99])), [99])
    with pytest.raises(TypeError, match="integer"):
        jax.jit(lambda x: checks.check_token_ids(x, 5, what="ids"))(jnp.zeros(2))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_check_times(bad):
    checks.check_times(jnp.array([0.0, 0.5, 1.0]))
    checks.check_times(0.25)
    checks.check_times(jnp.array([0.5, 1.0], jnp.bfloat16))
    with pytest.raises(ValueError, match="found 1.5"):
        checks.check_times(jnp.array([1.5], jnp.bfloat16))
    with pytest.raises(TypeError, match="float time"):
        checks.check_times(np.array(["0.5"]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        checks.check_times(np.array([0.5, bad]))
    jax.jit(lambda t: checks.check_times(t) or t)(jnp.array(bad))  # traced: not checked


def test_check_prompt_broadcasts_and_converts():
    tokens, mask = checks.check_prompt(np.array([1, 2, 0]), np.array([1, 0, 1]), 4, 3, 3)
    assert tokens.shape == mask.shape == (4, 3)
    assert tokens.dtype == jnp.int32 and mask.dtype == jnp.bool_
    assert mask[0].tolist() == [True, False, True]
    assert checks.check_prompt(None, None, 4, 3, 3) == (None, None)


def test_check_prompt_errors():
    tok = np.zeros((3,), np.int32)
    mask = np.ones((3,), bool)
    with pytest.raises(ValueError, match="given together.*prompt_mask is None"):
        checks.check_prompt(tok, None, 2, 3, 5)
    with pytest.raises(ValueError, match=r"prompt_tokens has shape \[4\]; expected \[N, L\] = \[2, 3\]"):
        checks.check_prompt(np.zeros(4, np.int32), mask, 2, 3, 5)
    with pytest.raises(ValueError, match=r"prompt_mask has shape \[3, 3\]"):
        checks.check_prompt(tok, np.ones((3, 3), bool), 2, 3, 5)
    with pytest.raises(TypeError, match="prompt_tokens.*integer token ids, got dtype float32"):
        checks.check_prompt(tok.astype(np.float32), mask, 2, 3, 5)
    with pytest.raises(TypeError, match="prompt_mask must be bool.*float32"):
        checks.check_prompt(tok, mask.astype(np.float32), 2, 3, 5)
    with pytest.raises(ValueError, match="only 0 and 1"):
        checks.check_prompt(tok, np.array([0, 2, 1]), 2, 3, 5)
    with pytest.raises(ValueError, match=r"prompt_tokens.*\[0, 5\).*config\.process\.num_classes.*99"):
        checks.check_prompt(np.array([0, 99, 1]), mask, 2, 3, 5)
    # A token id 5 (the mask id of the masked process) is not a clean class either.
    with pytest.raises(ValueError, match="found 5"):
        checks.check_prompt(np.array([0, 5, 1]), mask, 2, 3, 5)
    # Out-of-range ids where the mask is False are ignored.
    checks.check_prompt(np.array([0, 99, 1]), np.array([True, False, True]), 2, 3, 5)


def test_check_batch():
    batch = {"tokens": np.array([[0, 1], [2, 3]], np.int32), "label": np.array([0, 9], np.int32)}
    assert checks.check_batch(batch, 4, 10) is batch
    with pytest.raises(ValueError, match=r"training batch 'tokens'.*\[0, 3\).*vocabulary"):
        checks.check_batch(batch, 3)
    with pytest.raises(ValueError, match=r"training batch 'label'.*\[0, 5\)"):
        checks.check_batch(batch, 4, 5)
