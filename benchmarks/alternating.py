"""Timing helpers shared by the benchmarks that compare versions of one computation in one
process (this machine's run-to-run noise is +-15%, so versions are timed in alternation).

    medians = median_times({"a": compiled_a, "b": compiled_b}, (x, y), runs=9)  # seconds
    max_difference(tree_a, tree_b)                                           # max |a - b|
    rows = compare_gradients({"a": loss_a, "b": loss_b}, (x, y), argnums=(0, 1), runs=9)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def median_times(programs: Mapping[str, Callable], args: tuple, runs: int) -> dict[str, float]:
    """{name: median seconds}: `runs` rounds that call each program once on `args`, in order,
    waiting for each result before the next call."""
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(runs):
        for name, program in programs.items():
            start = time.perf_counter()
            jax.block_until_ready(program(*args))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def max_difference(a: Any, b: Any) -> float:
    """The largest |a - b| over the leaves of two pytrees of the same structure."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in pairs)


class Row(NamedTuple):
    """One version's line of a comparison: its compiled program, median seconds, ratio to the
    first version's median, and the largest difference of its outputs from the first's."""

    name: str
    compiled: Any
    seconds: float
    ratio: float
    diff: float


def compare_gradients(losses: Mapping[str, Callable], args: tuple, argnums: tuple[int, ...],
                      runs: int) -> list[Row]:
    """jax.value_and_grad(loss, argnums) of each version compiled for `args`, run once, then
    timed in alternation (`median_times`); one `Row` per version, in order."""
    compiled, outs = {}, {}
    for name, loss in losses.items():
        compiled[name] = jax.jit(jax.value_and_grad(loss, argnums=argnums)).lower(*args).compile()
        outs[name] = compiled[name](*args)
    medians = median_times(compiled, args, runs)
    first = next(iter(losses))
    return [Row(name, compiled[name], medians[name], medians[name] / medians[first],
                max_difference(outs[name], outs[first])) for name in losses]
