"""Config drift on resume: the run's config against the one its workdir was trained with.

    changes = config_drift.diff(saved, current)          # {'model.d_model': (32, 64), ...}
    refused, accepted = config_drift.split(changes)
    config_drift.check_resume(workdir, config)           # ConfigDriftError when `refused`

A workdir's checkpoints hold the weights of one model of one method on one data: resuming them
under a different method, process, parameterization, schedule, network or data/vocabulary would
either fail to read them (a shape mismatch is not corruption: nothing is set aside) or, worse,
silently train the old weights under a new objective. Such a change is *refused* at start-up,
before anything in the workdir is moved or written, with one message listing the changed fields.

A new `training.seed` is refused too: the resumed run keeps the checkpoint's RNG, so the seed
would be ignored for the noise while it reshuffled the data. Changes people make on purpose are
*accepted* and logged: the length of the run, the learning
rate and its schedule, the batch size (the data position is kept in examples, not batches:
`data.pipeline.TrainIterator`), evaluation, sampling and checkpoint settings, the mesh, and
runtime-only model switches (remat, attention kernel, logits chunking, dtype, dropout).

Rule per field `section.name`: a section in REFUSED_SECTIONS refuses every field but those in
ACCEPTED_FIELDS; any other section accepts every field but those in REFUSED_FIELDS; a section
not known here is refused (it may configure the method).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from discrete_diffusion.training.faults import TrainingStoppedError

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"

REFUSED_SECTIONS = ("method", "process", "model", "data")
ACCEPTING_SECTIONS = ("training", "sampler", "eval", "mesh")
ACCEPTED_FIELDS = frozenset({
    "model.remat", "model.attention_impl", "model.attention_block", "model.logits_chunk",
    "model.dtype", "model.dropout",
    "data.eval_batch_size", "data.eval_max_batches", "data.eval_pad_last", "data.num_threads",
    "data.prefetch", "data.cache_dir", "data.data_dir",
})
# the objective, and the seed (a resumed run keeps the checkpoint's RNG: a new seed would be
# silently ignored for the noise and silently change the data order)
REFUSED_FIELDS = frozenset({"training.loss", "training.seed"})


class ConfigDriftError(TrainingStoppedError):
    """The run's config changes a field that defines the model of an existing workdir."""

    exit_code = 5


def _plain(config: Any) -> dict:
    """A config (ConfigDict or dict from config.json) as JSON-plain nested dicts (tuples become
    lists, as config.json stores them)."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=str))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


MISSING = "<absent>"  # the side of a field that one config does not have


def diff(saved: Any, current: Any) -> dict[str, tuple[Any, Any]]:
    """{dotted field: (saved value, current value)} for every leaf that differs; a field present
    on one side only has MISSING on the other."""
    a, b = _flatten(_plain(saved)), _flatten(_plain(current))
    return {k: (a.get(k, MISSING), b.get(k, MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, MISSING) != b.get(k, MISSING)}


def is_refused(field: str) -> bool:
    """True when changing `field` ('section.name...') on resume is refused (module doc)."""
    section = field.split(".", 1)[0]
    if section in REFUSED_SECTIONS:
        return field not in ACCEPTED_FIELDS
    if section in ACCEPTING_SECTIONS:
        return field in REFUSED_FIELDS
    return True


def split(changes: dict[str, tuple[Any, Any]]) -> tuple[dict, dict]:
    """(refused, accepted) sub-dicts of `changes`. A field that one side lacks is accepted: a
    field the library added or dropped since the workdir's config was written (a network that
    really differs still fails to restore, and is then refused without moving anything)."""
    refused = {k: v for k, v in changes.items() if is_refused(k) and MISSING not in v}
    return refused, {k: v for k, v in changes.items() if k not in refused}


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    """'model.d_model 32 -> 64, process.name 'masked' -> 'uniform''."""
    def show(v: Any) -> str:
        return "unset (the default)" if v is None else repr(v)

    return ", ".join(f"{k} {show(old)} -> {show(new)}" for k, (old, new) in changes.items())


def saved_config(workdir: str) -> dict | None:
    """workdir/config.json as a dict, or None when there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_resume(workdir: str, config: Any, what: str = "resume") -> dict[str, tuple[Any, Any]]:
    """The accepted changes of `config` against workdir/config.json ({} without one); raises
    `ConfigDriftError` listing the refused ones. Reads only; moves and writes nothing."""
    saved = saved_config(workdir)
    if saved is None:
        return {}
    refused, accepted = split(diff(saved, config))
    if refused:
        raise ConfigDriftError(
            f"cannot {what} {os.path.abspath(workdir)}: its checkpoints were trained with another "
            f"model, method, data or seed ({len(refused)} field(s) changed: {describe(refused)}). "
            "Nothing in the workdir was changed. Run with the workdir's config "
            f"({os.path.join(os.path.abspath(workdir), CONFIG_FILE)}), or start a new run with "
            "a new --workdir."
        )
    return accepted


def record(workdir: str, config: Any, step: int | None, changes: dict[str, tuple[Any, Any]]) -> None:
    """Writes `config` as workdir/config.json and appends it, with the step resumed from and the
    accepted changes, as one line of workdir/config_history.jsonl (earlier configs are kept)."""
    plain = _plain(config)
    entry = {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "resumed_from_step": step, "changes": {k: list(v) for k, v in changes.items()},
             "config": plain}
    with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    tmp = os.path.join(workdir, CONFIG_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=1) if hasattr(config, "to_json_best_effort")
                else json.dumps(plain, indent=1))
    os.replace(tmp, os.path.join(workdir, CONFIG_FILE))


__all__ = ["ACCEPTED_FIELDS", "CONFIG_FILE", "HISTORY_FILE", "MISSING", "REFUSED_FIELDS", "REFUSED_SECTIONS",
           "ConfigDriftError", "check_resume", "describe", "diff", "is_refused", "record",
           "saved_config", "split"]
