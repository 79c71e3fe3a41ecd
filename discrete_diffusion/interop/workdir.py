"""A converted checkpoint as a workdir: what a training run leaves behind, at step 0.

    W/config.json          the resolved config (as `training.train_and_evaluate` writes it)
    W/config.py            `--config=W/config.py`: configs/base.py's defaults updated from
                           config.json (placeholders and tuples keep their types, so every
                           `--config.x.y=...` override works as with configs/*.py)
    W/checkpoints/0        the train state: params = ema_params = the converted network, a fresh
                           optimizer state, step 0

so that `python -m discrete_diffusion.main --config=W/config.py --workdir=W --mode=sample`
(`--mode=eval`, `--mode=train` to fine-tune, `discrete_diffusion.evaluation.frontier`) run on it
as on any run of ours. Writing it needs no data: the trainer is built from the config's own
num_classes and seq_len.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

CONFIG_PY = '''"""Config of a converted checkpoint (discrete_diffusion.interop):

    python -m discrete_diffusion.main --config={path} --workdir={workdir} --mode=sample
"""

import os

from discrete_diffusion.interop.workdir import workdir_config


def get_config():
    return workdir_config(os.path.dirname(os.path.abspath(__file__)))
'''


def _update(section: Any, values: dict) -> None:
    """section's fields <- values (lists back to tuples where the default is a tuple)."""
    for key, value in values.items():
        if isinstance(value, dict) and key in section and isinstance(section[key], ml_collections.ConfigDict):
            _update(section[key], value)
            continue
        current = section.get(key, None) if key in section else None
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        section[key] = value


def workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """configs/base.py's config with the values of workdir/config.json."""
    from discrete_diffusion.interop import base_config

    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    config = base_config()
    with config.unlocked():
        for name, values in saved.items():
            if name not in config:
                config[name] = ml_collections.ConfigDict()
            _update(config[name], values)
    return config


def write_workdir(config: ml_collections.ConfigDict, params: Any, workdir: str) -> str:
    """Writes config.json, config.py and checkpoints/0 holding `params` (the network's tree) into
    workdir (module doc); returns workdir. Refuses a workdir that already has checkpoints."""
    from discrete_diffusion import config_validation
    from discrete_diffusion.training import checkpoints
    from discrete_diffusion.training.trainer import get_trainer

    config_validation.validate(config)
    workdir = os.path.abspath(workdir)
    if os.path.isdir(checkpoints.checkpoint_dir(workdir)) and os.listdir(checkpoints.checkpoint_dir(workdir)):
        raise FileExistsError(f"{checkpoints.checkpoint_dir(workdir)} already holds checkpoints: "
                              "convert into a new workdir")
    k = int(config.process.num_classes)
    trainer = get_trainer(config, k, int(config.data.seq_len), None, 0)
    state = trainer.init_state(int(config.training.seed))
    old = state.params["network"]
    if jax.tree.structure(old) != jax.tree.structure(params):
        raise ValueError("the converted parameters do not have the tree of config's network: "
                         f"{jax.tree.structure(params)} vs {jax.tree.structure(old)}")
    net = jax.tree.map(lambda new, o: jax.device_put(jnp.asarray(new, o.dtype), o.sharding), params, old)
    for new, o in zip(jax.tree.leaves(net), jax.tree.leaves(old), strict=True):
        if new.shape != o.shape:
            raise ValueError(f"converted parameter of shape {new.shape} where the network has {o.shape}")
    state = state.replace(params={**state.params, "network": net},
                          ema_params={**state.ema_params, "network": net})
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    path = os.path.join(workdir, "config.py")
    with open(path, "w") as f:
        f.write(CONFIG_PY.format(path=path, workdir=workdir))
    mngr = checkpoints.checkpoint_manager(workdir, config)
    try:
        if not checkpoints.save_checkpoint(mngr, state, None):
            raise ValueError("the converted parameters hold non-finite values")
        mngr.wait_until_finished()
    finally:
        mngr.close()
    return workdir


__all__ = ["workdir_config", "write_workdir"]
