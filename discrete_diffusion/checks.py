"""Input checks of the public API, shared by sampling, processes and the data pipeline.

Two kinds, so that jitted code stays free of host callbacks:

* static checks (``check_logits``): shapes and dtypes, known while tracing; they raise once, at
  trace time, and cost nothing at run time;
* value checks (``check_token_ids``, ``check_times``, ``check_prompt``): they look at concrete
  values on the host, before ``jit``. Given a tracer (inside ``jit``/``vmap``/``grad``) they
  check what is static and skip the values.

Every error names the argument or config field, what was found and what is allowed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES_FIELD = "config.process.num_classes"


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values readable on the host (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def check_logits(
    logits: Any,
    x_t_shape: tuple[int, ...],
    num_classes: int,
    *,
    source: str = "model_fn",
    field: str = NUM_CLASSES_FIELD,
) -> None:
    """Raises unless ``logits`` is a floating array of shape ``x_t_shape + (num_classes,)``.

    Static (shape and dtype only), so inside ``jit`` it runs once at trace time. ``field`` names
    where ``num_classes`` comes from, for the error message.
    """
    shape = getattr(logits, "shape", None)
    dtype = getattr(logits, "dtype", None)
    expected = (*tuple(x_t_shape), int(num_classes))
    if shape is None or dtype is None:
        raise TypeError(
            f"{source} must return an array of logits [N, L, K] = {_shape(expected)}, "
            f"got {type(logits).__name__}"
        )
    if tuple(shape) != expected:
        raise ValueError(
            f"{source} returned logits of shape {_shape(shape)}; expected [N, L, K] = "
            f"{_shape(expected)}: N, L from x_t {_shape(x_t_shape)} and K = {num_classes} clean "
            f"classes ({field})"
        )
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{source} returned logits of dtype {np.dtype(dtype).name}; expected a floating "
            "dtype (float32, bfloat16, float16 or float64)"
        )


def check_token_ids(
    ids: Any,
    num_classes: int,
    *,
    what: str,
    field: str = NUM_CLASSES_FIELD,
    where: Any = None,
) -> None:
    """Raises unless ``ids`` is an integer array with values in ``[0, num_classes)``.

    ``where`` (bool, broadcastable to ``ids``) restricts the value check to those entries. The
    dtype is always checked; the values only when ``ids`` (and ``where``) are concrete.
    """
    dtype = getattr(ids, "dtype", None)
    if dtype is None:
        ids = np.asarray(ids)
        dtype = ids.dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{what} must hold integer token ids, got dtype {np.dtype(dtype).name}")
    if not is_concrete(ids) or (where is not None and not is_concrete(where)):
        return
    values = np.asarray(ids)
    if where is not None:
        values, keep = np.broadcast_arrays(values, np.asarray(where).astype(bool))
        values = values[keep]
    if values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_classes:
        bad = int(values[(values < 0) | (values >= num_classes)][0])
        raise ValueError(
            f"{what}: ids must lie in [0, {num_classes}) ({field}: {num_classes}), found {bad} "
            f"(range [{lo}, {hi}])"
        )


def check_times(t: Any, *, what: str = "t") -> None:
    """Raises unless every (concrete) time in ``t`` lies in [0, 1] (NaN included); tracers pass."""
    if not is_concrete(t):
        return
    values = np.asarray(t)
    if not (jnp.issubdtype(values.dtype, jnp.number) or values.dtype == np.bool_):
        raise TypeError(f"{what} must be a float time in [0, 1], got dtype {values.dtype.name}")
    if values.size == 0:
        return
    values = values.astype(np.float64)  # bfloat16 and friends compare like floats
    inside = (values >= 0) & (values <= 1)
    if not inside.all():
        bad = values[~inside].ravel()[0].item()
        raise ValueError(f"{what} must lie in [0, 1] (diffusion time), found {bad!r}")


def check_prompt(
    prompt_tokens: Any,
    prompt_mask: Any,
    num_samples: int,
    seq_len: int,
    num_classes: int,
) -> tuple[jax.Array, jax.Array] | tuple[None, None]:
    """Validated ``(prompt_tokens int32 [N, L], prompt_mask bool [N, L])``, or ``(None, None)``.

    Accepted: both None, or both given with shapes broadcastable to ``[N, L]`` (``[L]``,
    ``[1, L]``, ``[N, L]``); ``prompt_tokens`` of an integer dtype; ``prompt_mask`` bool (or an
    integer dtype holding only 0 and 1). At positions where the mask is True the token must be a
    clean class, ``0 .. K-1`` (K = ``config.process.num_classes``); other positions are ignored.
    Values are checked when the arrays are concrete (always, when called before jit).
    """
    if prompt_tokens is None and prompt_mask is None:
        return None, None
    if (prompt_tokens is None) != (prompt_mask is None):
        missing = "prompt_mask" if prompt_mask is None else "prompt_tokens"
        raise ValueError(f"prompt_tokens and prompt_mask must be given together ({missing} is None)")
    if not hasattr(prompt_tokens, "dtype"):
        prompt_tokens = np.asarray(prompt_tokens)
    if not hasattr(prompt_mask, "dtype"):
        prompt_mask = np.asarray(prompt_mask)
    target = (int(num_samples), int(seq_len))
    for name, arr in (("prompt_tokens", prompt_tokens), ("prompt_mask", prompt_mask)):
        shape = tuple(arr.shape)
        if not shape or len(shape) > 2 or shape[-1] != target[1] or (
            len(shape) == 2 and shape[0] not in (1, target[0])
        ):
            raise ValueError(
                f"{name} has shape {_shape(shape)}; expected [N, L] = {_shape(target)} "
                f"(num_samples, seq_len), or [L] = [{target[1]}] shared by all samples"
            )
    mask_dtype = prompt_mask.dtype
    if np.dtype(mask_dtype) != np.bool_:
        if not jnp.issubdtype(mask_dtype, jnp.integer):
            raise TypeError(
                f"prompt_mask must be bool (True where the token is given), got dtype "
                f"{np.dtype(mask_dtype).name}"
            )
        if is_concrete(prompt_mask) and not np.isin(np.asarray(prompt_mask), (0, 1)).all():
            raise ValueError(
                "prompt_mask must be bool (True where the token is given); an integer mask may "
                f"hold only 0 and 1, found values {np.unique(np.asarray(prompt_mask))[:8].tolist()}"
            )
    check_token_ids(
        prompt_tokens, num_classes, what="prompt_tokens (where prompt_mask is True)",
        where=prompt_mask,
    )
    tokens = jnp.broadcast_to(jnp.asarray(prompt_tokens, jnp.int32), target)
    mask = jnp.broadcast_to(jnp.asarray(prompt_mask).astype(bool), target)
    return tokens, mask


def check_batch(batch: dict[str, np.ndarray], num_classes: int, num_labels: int | None = None,
                *, what: str = "training batch") -> dict[str, np.ndarray]:
    """Checks a host batch (``'tokens'`` in ``[0, K)``, ``'label'`` in ``[0, num_labels)``).

    Returns the batch unchanged, so it can be a pipeline ``map``. K is the tokenizer's vocabulary
    (``DataBundle.num_classes``), which training copies to ``config.process.num_classes``.
    """
    check_token_ids(
        batch["tokens"], num_classes, what=f"{what} 'tokens'",
        field="the tokenizer's vocabulary size, DataBundle.num_classes",
    )
    if num_labels is not None and "label" in batch:
        check_token_ids(
            batch["label"], num_labels, what=f"{what} 'label'",
            field="DataBundle.num_labels",
        )
    return batch


def check_loss_inputs(
    name: str, logits: Any, x0: Any, x_t: Any, t: Any, width: int, width_what: str,
    noise: Any = None,
) -> None:
    """Static checks of a loss's arguments (trace time; nothing at run time). Raises unless

        x0, x_t (and noise): integer token ids of one shape [..., L];
        logits: floating, x0's shape + (width,), `width_what` naming what the width is;
        t: [] (one time), x0.shape[:-1] (one per sequence) or x0.shape (one per position), or
           a shape that broadcasts to these without changing x0's shape ([B, 1]).

    `name` is the loss function, for the message.
    """
    x0_shape = tuple(getattr(x0, "shape", ()))
    for arg, value in (("x0", x0), ("x_t", x_t), ("noise", noise)):
        if value is None and arg == "noise":
            continue
        dtype = getattr(value, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"{name}: {arg} must hold integer token ids (int32 [B, L]), got "
                            f"{'dtype ' + str(dtype) if dtype is not None else type(value).__name__}")
        if len(x0_shape) < 1 or tuple(value.shape) != x0_shape:
            raise ValueError(f"{name}: {arg} has shape {_shape(value.shape)}; expected x0's shape "
                             f"[B, L] = {_shape(x0_shape)}")
    expected = (*x0_shape, int(width))
    shape, dtype = getattr(logits, "shape", None), getattr(logits, "dtype", None)
    if shape is None or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name}: logits must be a floating array [B, L, {width}], got "
                        f"{dtype if dtype is not None else type(logits).__name__}")
    if tuple(shape) != expected:
        raise ValueError(f"{name}: logits have shape {_shape(shape)}; expected [B, L, K] = "
                         f"{_shape(expected)} (B, L from x0, K = {width}: {width_what})")
    t_shape = tuple(jnp.shape(t))
    per_token = t_shape if len(t_shape) == len(x0_shape) else (*t_shape, 1)  # processes.per_token
    try:
        fits = len(t_shape) <= len(x0_shape) and np.broadcast_shapes(per_token, x0_shape) == x0_shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name}: t has shape {_shape(t_shape)}; expected [] (one time), "
                         f"{_shape(x0_shape[:-1])} (one per sequence) or {_shape(x0_shape)} "
                         "(one per position)")
