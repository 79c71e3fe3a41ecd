"""What the network's time embedding sees: `config.model.time_input`.

    'scaled_t'  time_scale * t (1000 t): this library's DiT (the default)
    'sigma'     sigma(t) = -log alpha_t of `config.process.schedule`: the input of the reference
                DiTs of MDLM, Duo, UDLM and SEDD (their `sigma_map`), with no scale factor

Both feed the same sinusoidal features [cos(x f), sin(x f)] (256 wide) and time MLP. MDLM, Duo
and UDLM embed sigma of their log-linear schedule (alpha_t = 1 - (1 - eps) t, eps = 1e-3, so
sigma = -log1p(-(1 - eps) t)); SEDD embeds its "total noise" sigma-bar(t), the same quantity
(its absorbing and uniform graphs have alpha_t = exp(-sigma-bar(t))).

sigma is infinite where alpha_t = 0, so 'sigma' needs a schedule with alpha(1) > 0 (the
log-linear one; 'linear', 'cosine' and 'poly' reach 0 at t = 1, where every sampler starts).

SEDD's score network also shifts its output by its time (`scale_by_sigma`, absorbing graph):

    log s_theta(x_t)[y] = out[y] - log(e^sigma - 1) - log(V - 1)                       (1)

with V = K + 1 states; `score_shift` is that offset (`config.model.scale_by_sigma`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import schedules

Array = jax.Array

TIME_INPUTS = ("scaled_t", "sigma")


def sigma_of(schedule: Any, t: Array) -> Array:
    """sigma(t) = -log alpha_t, float32, elementwise in t (`[B]` or `[B, L]`)."""
    return -jnp.log(schedule.alpha(jnp.asarray(t, jnp.float32)).astype(jnp.float32))


def score_shift(sigma: Array, num_states: int) -> Array:
    """log(e^sigma - 1) + log(V - 1), the offset subtracted in equation (1); float32 like sigma.

    expm1 keeps e^sigma - 1 accurate for small sigma (SEDD switches to it below 0.5)."""
    return jnp.log(jnp.expm1(sigma)) + math.log(num_states - 1)


def time_input_of(config: Any) -> tuple[str, Any]:
    """(`config.model.time_input` ('scaled_t' if absent), the schedule it needs or None), validated.

    'sigma' builds the schedule of `config.process` and checks alpha(1) > 0; errors name the
    field and the allowed values."""
    value = config.model.get("time_input", "scaled_t")
    if value not in TIME_INPUTS:
        raise ValueError(f"config.model.time_input={value!r} is not one of {list(TIME_INPUTS)}")
    scale_by_sigma = config.model.get("scale_by_sigma", False)
    if scale_by_sigma not in (True, False):
        raise ValueError(f"config.model.scale_by_sigma={scale_by_sigma!r} must be True or False")
    if value == "scaled_t":
        if scale_by_sigma:
            raise ValueError("config.model.scale_by_sigma=True needs config.model.time_input="
                             "'sigma' (SEDD's output shift by its noise level)")
        return value, None
    process = config.get("process", None)
    name = None if process is None else process.get("schedule", "linear")
    if name not in schedules.NAMES:
        raise ValueError(f"config.model.time_input='sigma' embeds -log alpha_t of "
                         f"config.process.schedule, which must be one of {list(schedules.NAMES)} "
                         f"(got {name!r})")
    sched = schedules.get(name, eps=process.get("schedule_eps", 1e-3),
                          power=process.get("schedule_power", 2.0))
    if not float(sched.alpha(1.0)) > 0.0:
        raise ValueError(f"config.model.time_input='sigma' embeds -log alpha_t, infinite at t = 1 "
                         f"for config.process.schedule={name!r} (alpha(1) = 0); use 'loglinear' "
                         "(alpha(1) = config.process.schedule_eps > 0) or time_input='scaled_t'")
    if scale_by_sigma and (process.get("name", None) != "masked"
                           or config.model.get("parameterization", "denoiser") != "score"):
        raise ValueError("config.model.scale_by_sigma=True (SEDD's absorbing-graph output shift) "
                         "needs config.process.name='masked' and config.model.parameterization="
                         "'score'")
    if scale_by_sigma and int(config.model.get("logits_chunk", 0) or 0) > 0:
        raise ValueError("config.model.scale_by_sigma=True is not supported with "
                         "config.model.logits_chunk > 0 (the chunked head skips the shift)")
    return value, sched
