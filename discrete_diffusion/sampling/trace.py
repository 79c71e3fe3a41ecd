"""A sampler's trajectory, recorded through the sampler contract.

Every sampler calls the network through its `Context` (`Context.network`, `Context.network_at`).
When a `recording()` is active while a sampler is built (`make_context`), the context carries a
`Recorder`, and each network call first hands the state x_t it is made on, with its time t, to
the host (`jax.debug.callback`, ordered). `Recorder.trajectory(tokens)` appends the final clean
tokens. So the trajectory of any sampler (ancestral, first-hitting, Psi, informed PC, AUDM, the
score samplers, guided sampling, the methods' own samplers) is one row per network call:

    states[s] = x_t at the s-th network call  (s < S),   states[S] = the final tokens,

and a position whose value differs between two rows was revealed (masked before) or changed (a
uniform, Psi or corrector step replaced one token by another) in between.

    with dd.sampling.trace.recording() as rec:
        result = dd.generate(key, model_fn, config, N, L)
    trajectory = rec.trajectory(result.tokens)   # .states int32 [S + 1, N, L], .times [S + 1]

A sampler built while recording is compiled with the callback in it, and cached apart from the
one built without (`sampling/compiled.py`, `methods.base.compiled_sampler`: the key says whether
it records), so the training loop's periodic traced samples compile once. The callback reaches
the recorder of the innermost `recording()` active when the program *runs* (`_deliver`; callbacks
run on the runtime's thread, so a module-level stack, not a context variable, holds them): a
recording program run outside any `recording()` delivers nothing, and a sampler compiled without
the callback records nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Iterator

import jax
import numpy as np

_ACTIVE: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("recorder", default=None)
_RUNNING: list[Recorder] = []  # the recorders of the open recording() blocks, innermost last


def _deliver(x_t: np.ndarray, t: np.ndarray) -> None:
    """The host callback of every recording sampler: to the innermost open recording, if any."""
    if _RUNNING:
        _RUNNING[-1](x_t, t)


@dataclasses.dataclass
class Trajectory:
    """states: int32 [S + 1, N, L], the input of each network call, then the final tokens;
    times: float64 [S + 1], the time t of each call (its mean over positions for a per-position
    t) and 0 for the final tokens."""

    states: np.ndarray
    times: np.ndarray


class Recorder:
    """Host-side collector of `(x_t, t)` pairs, in the order the network calls run.

    With `expected_calls` > 0 it also prints a progress line with the ETA
    (`progress.line('sampling', calls, expected_calls, ...)`) at most every `report_every_s`
    seconds, so long sampling shows how far it is; an upper bound for samplers that skip calls
    (masked ancestral sampling calls the network only when a token unmasks)."""

    def __init__(self, expected_calls: int = 0, report_every_s: float = 30.0) -> None:
        self.states: list[np.ndarray] = []
        self.times: list[float] = []
        self.expected_calls, self.report_every_s = expected_calls, report_every_s
        self._first = self._last_report = 0.0  # the clock starts at the first call (compiled)

    def __call__(self, x_t: np.ndarray, t: np.ndarray) -> None:
        self.states.append(np.asarray(x_t, np.int32).copy())
        self.times.append(float(np.mean(np.asarray(t)[:1])))
        now = time.perf_counter()
        if len(self.states) == 1:
            self._first = self._last_report = now
        elif self.expected_calls > 0 and now - self._last_report >= self.report_every_s:
            from discrete_diffusion import progress

            self._last_report = now
            done = min(len(self.states), self.expected_calls)
            rate = (len(self.states) - 1) / max(now - self._first, 1e-9)
            print("[samples] " + progress.line("sampling", done, self.expected_calls,
                                               now - self._first, unit="network call", rate=rate),
                  flush=True)

    def record(self, x_t: jax.Array, t: jax.Array) -> None:
        """Inside a traced sampler: hand `(x_t, t)`, when the call runs, to the recorder of the
        innermost recording open then (`_deliver`; this one while its block is open)."""
        jax.debug.callback(_deliver, x_t, t, ordered=True)

    def trajectory(self, tokens: jax.Array | np.ndarray) -> Trajectory:
        """The recorded states followed by the final `tokens` [N, L]."""
        final = np.asarray(jax.device_get(tokens), np.int32)
        return Trajectory(np.stack([*self.states, final]), np.array([*self.times, 0.0]))


@contextlib.contextmanager
def recording(expected_calls: int = 0, report_every_s: float = 30.0) -> Iterator[Recorder]:
    """Records the trajectory of every sampler built inside the block (see the module docstring);
    `expected_calls` > 0: with a progress line every `report_every_s` seconds (`Recorder`)."""
    recorder = Recorder(expected_calls, report_every_s)
    token = _ACTIVE.set(recorder)
    _RUNNING.append(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)
        _RUNNING.remove(recorder)


def active() -> Recorder | None:
    """The recorder of the innermost active `recording()`, or None."""
    return _ACTIVE.get()
