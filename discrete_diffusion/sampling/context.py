"""What every sampler receives: the process, the network and the sampler settings.

A sampler is a module with `DEFAULTS` (its own config.sampler fields and their defaults) and
`run(key, ctx) -> (tokens int32 [N, L], nfe int32)`; `sampling.generate` builds the context from a
config and dispatches on `config.sampler.name`.

Logits at a few positions (`Context.network_at`): a sampler that draws tokens at P << L positions
asks for `[N, P, K]` logits only. A model_fn whose signature names the keyword `output_positions`
(int32 `[N, P]`, e.g. `DiffusionTransformer(..., output_positions=...)`, which gathers the final
hidden states before the output projection) is called with it; any other model_fn is called as
before and its `[N, L, K]` output gathered, so model_fns written for `model_fn(x_t, t)` keep
working unchanged (`accepts_output_positions`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from discrete_diffusion import checks
from discrete_diffusion import parameterizations as params_lib
from discrete_diffusion.processes import InterpolatingProcess
from discrete_diffusion.sampling.categorical import transform_logits

Array = jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything a sampler needs.

    proc: the forward process; model_fn(x_t, t) -> logits [N, L, K] (t of shape [N]);
    parameterization: what the logits mean ('denoiser' | 'loo' | 'score');
    settings: config.sampler fields with defaults filled in;
    time_conditioning: whether the network reads t (output reuse is exact only if not);
    prompt_tokens, prompt_mask: int32 / bool [N, L]: positions fixed to given clean tokens
    (None: unconditional). Samplers keep them fixed and condition the network on them.
    guide: guidance of the per-step kernels (`sampling.guidance.KernelGuide`, set by
    `guidance.guided_generate`); None: unguided. Samplers reach it through `step_kernel`.
    recorder: None, or a `sampling.trace.Recorder` that `network` / `network_at` hand the state
    x_t of each call to (the sampler's trajectory; set by `make_context` inside a recording).
    """

    proc: InterpolatingProcess
    model_fn: Callable[..., Array]
    parameterization: str
    settings: dict[str, Any]
    num_samples: int
    seq_len: int
    time_conditioning: bool = True
    prompt_tokens: Array | None = None
    prompt_mask: Array | None = None
    guide: Callable[..., Array] | None = None
    recorder: Any = None  # a `trace.Recorder`: every network call records (x_t, t) (trace.py)

    def times(self, t: Array | float) -> Array:
        """The time array for a grid time t: [N], or [N, L] with t = 0 at prompt positions.

        Prompted positions are clean tokens, i.e. at time 0. For the masked process that is
        visible in x_t (they are unmasked), so t stays per sequence; for the uniform process it
        is not, so the network gets per-position times (exact for networks that accept [N, L]).
        The same array goes into the conversions and bridges, which then keep those positions.
        """
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (self.num_samples,))
        if self.prompt_mask is None or self.proc.mask_id is not None:
            return t
        return jnp.where(self.prompt_mask, 0.0, t[:, None])

    @property
    def output_parameterization(self) -> str:
        """What `network`'s logits mean: the network's own parameterization, or the
        representation that temperature is applied to (`config.sampler.temperature_on`)."""
        on = self.settings.get("temperature_on", "output")
        return self.parameterization if on == "output" else on

    def convert(self, logits: Array, x_t: Array, t: Array, dst: str) -> Array:
        """`network`'s logits (meaning `output_parameterization`) in the representation a
        sampler needs, `dst` = 'denoiser' | 'loo' | 'score' (`parameterizations.convert`)."""
        return params_lib.convert(self.proc, self.output_parameterization, dst, logits, x_t, t)

    def network(self, x_t: Array, t: Array, **inputs: Array) -> Array:
        """Network logits with temperature / top-k / nucleus applied, in `output_parameterization`.

        `config.sampler.temperature_on` chooses the distribution that is tempered/truncated:
          'output'   the network's raw output (whatever its parameterization);
          'loo'      the LOO posterior rho^(1/T): for uniform diffusion the tempered LOO goes
                     into the exact bridge, which leaves the self-evidence term log l(x_t) of
                     the denoiser untouched (rev_udm's "LOO temperature");
          'denoiser' the denoiser mu^(1/T): for uniform diffusion this also sharpens the
                     self-evidence term, biasing towards keeping the current token.
        For the masked process both agree at masked positions. t: from `times` ([N] or [N, L]).
        `inputs`: extra network inputs (e.g. noise=u for 'uniform_absorbing').
        """
        if self.recorder is not None:
            self.recorder.record(x_t, t)
        logits = self.model_fn(x_t, t, **inputs)
        checks.check_logits(logits, x_t.shape, self.proc.num_classes)  # trace time, static
        return self._output(logits, x_t, t)

    def network_at(self, x_t: Array, t: Array, positions: Array, **inputs: Array) -> Array:
        """`network(x_t, t)` at `positions` int32 `[N, P]` only: logits `[N, P, K]` with
        out[n, p] = network(x_t, t)[n, positions[n, p]] (after temperature / top-k / nucleus).

        Through `output_positions` when the model_fn accepts it (the [N, L, K] logits are never
        formed), else by gathering its full output (see the module docstring). Needs a schedule
        with one alpha per sequence (`per_position_schedule` False): the conversions see only the
        gathered positions.
        """
        positions = jnp.asarray(positions, jnp.int32)
        if self.recorder is not None:
            self.recorder.record(x_t, t)
        if accepts_output_positions(self.model_fn):
            logits = self.model_fn(x_t, t, output_positions=positions, **inputs)
            checks.check_logits(logits, positions.shape, self.proc.num_classes)
        else:
            logits = self.model_fn(x_t, t, **inputs)
            checks.check_logits(logits, x_t.shape, self.proc.num_classes)
            logits = jnp.take_along_axis(logits, positions[..., None], axis=1)
        x_at = jnp.take_along_axis(x_t, positions, axis=1)
        t_at = t if jnp.ndim(t) < 2 else jnp.take_along_axis(t, positions, axis=1)
        return self._output(logits, x_at, t_at)

    @property
    def per_position_schedule(self) -> bool:
        """Whether the process's alpha differs across positions (a learned per-position schedule)."""
        shape = jax.eval_shape(lambda: self.proc.alpha(jnp.zeros((1, 1), jnp.float32))).shape
        return tuple(shape) != (1, 1)

    def _output(self, logits: Array, x_t: Array, t: Array) -> Array:
        """The model's logits -> `output_parameterization`, then temperature / top-k / nucleus."""
        on = self.settings.get("temperature_on", "output")
        if on == "loo":
            logits = params_lib.convert(self.proc, self.parameterization, "loo", logits, x_t, t)
        elif on == "denoiser":
            logits = params_lib.convert(self.proc, self.parameterization, "denoiser", logits, x_t, t)
        elif on != "output":
            raise ValueError(
                f"config.sampler.temperature_on={on!r} is not one of ['output', 'loo', 'denoiser']"
            )
        s = self.settings
        return transform_logits(logits, s["temperature"], s["top_k"], s["top_p"])

    def step_kernel(
        self, kernel: Callable[[Array], Array], logits: Array, x_t: Array, t: Array, s: Array
    ) -> Array:
        """The kernel probabilities `[..., V]` of a step t -> s: `kernel(logits)`, with `logits` =
        `network(x_t, t)`.

        Under guidance the guide replaces it by the guided kernel (classifier-free guidance in the
        posterior form, classifier guidance; sampling/guidance.py), which may call `kernel` on
        other logits (the null label's) and evaluate a classifier at t (or s).
        """
        return kernel(logits) if self.guide is None else self.guide(self, kernel, logits, x_t, t, s)

    def initial_state(self, key: Array) -> Array:
        """x_1 ~ prior, with prompt positions set to their tokens."""
        x = self.proc.sample_prior(key, (self.num_samples, self.seq_len))
        return self.apply_prompt(x)

    def apply_prompt(self, x: Array) -> Array:
        """Overwrites the prompt positions of x with the prompt tokens."""
        if self.prompt_mask is None:
            return x
        return jnp.where(self.prompt_mask, self.prompt_tokens, x).astype(jnp.int32)

    def free(self, x: Array) -> Array:
        """Boolean [N, L]: positions the sampler may change."""
        if self.prompt_mask is None:
            return jnp.ones(x.shape, bool)
        return ~self.prompt_mask


def accepts_output_positions(model_fn: Callable[..., Array]) -> bool:
    """Whether `model_fn`'s signature names the keyword `output_positions` (then samplers pass
    int32 `[N, P]` positions and expect logits `[N, P, K]` there)."""
    try:
        return "output_positions" in inspect.signature(model_fn).parameters
    except (TypeError, ValueError):  # no signature (some builtins): the full-output path
        return False


def time_grid(num_steps: int) -> Array:
    """Uniform grid 1 = t_0 > t_1 > ... > t_N = 0, `[num_steps + 1]`."""
    return jnp.linspace(1.0, 0.0, num_steps + 1)
