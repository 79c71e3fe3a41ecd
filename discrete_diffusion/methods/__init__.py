"""Methods: what a config's `method.name` means (see `base` for the protocol the trainer calls).

    method = dd.methods.get(config, num_classes)

Built-in names (`NAMES`): 'diffusion' (methods/diffusion.py: process x parameterization x
objective), 'autoregressive' (methods/autoregressive.py: the causal baseline) and 'learned_order'
(methods/learned_order.py: masked diffusion with a learned per-position or per-value schedule
and its ordered sampler), and 'duo' (methods/duo.py: uniform diffusion trained through its
Gaussian dual, Duo's curriculum), 'duo_distill' (methods/duo_distill.py: Duo's discrete
consistency distillation of a trained uniform model, teacher refreshed each round), and 'vadd'
(methods/vadd.py: masked diffusion with a latent variable and a recognition model, the double
ELBO, latent samplers). When
`config.method.name` is unset it is derived from the config: 'autoregressive' for
`config.model.name == 'ar'`, else 'diffusion', so configs written before the methods seam keep
working.

A method defined outside the package is named by where it lives, 'package.module:Factory' or
'/path/to/file.py:Factory' (imported on first use), or registered under a short name with
`register(name, factory)`. A factory is called as `factory(config, num_classes)` (a class whose
constructor takes those two arguments is one).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

from discrete_diffusion.methods import (
    autoregressive,
    diffusion,
    duo,
    duo_distill,
    learned_order,
    stratified,
    vadd,
)
from discrete_diffusion.methods.base import Method, MethodBase

Factory = Callable[[Any, int], Method]

_REGISTRY: dict[str, Factory] = {
    "diffusion": diffusion.Diffusion,
    "autoregressive": autoregressive.Autoregressive,
    "learned_order": learned_order.LearnedOrder,
    "duo": duo.Duo,
    "duo_distill": duo_distill.DuoDistill,
    "vadd": vadd.VADD,
}
NAMES = tuple(_REGISTRY)
_REQUIRED = ("init", "prepare", "loss", "nelbo_samples", "generate", "optimizer", "partition_rules",
             "samples_with_config_sampler")


def register(name: str, factory: Factory) -> None:
    """Makes `config.method.name = name` build `factory(config, num_classes)`."""
    _REGISTRY[name] = factory


def method_name(config: Any) -> str:
    """config.method.name, or the name derived from a config that has none (module docstring)."""
    section = config.get("method", None)
    name = section.get("name", None) if section is not None else None
    if name is None:
        model = config.get("model", None)
        name = "autoregressive" if model is not None and model.get("name", None) == "ar" else "diffusion"
    return name


def _import(name: str) -> Factory:
    """The factory at 'package.module:attr' or '/path/file.py:attr'."""
    module_name, _, attr = name.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = os.path.abspath(os.path.expanduser(module_name))
            mod_id = "dd_method_" + os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(mod_id, path)
            if spec is None or not os.path.exists(path):
                raise FileNotFoundError(path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, FileNotFoundError, AttributeError) as e:
        raise ValueError(f"config.method.name={name!r}: cannot load {attr!r} from {module_name!r} "
                         f"({type(e).__name__}: {e})") from e


def factory(name: str) -> Factory:
    """The factory of a registered name or of a 'module:attr' / 'file.py:attr' path."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _import(name)
    raise ValueError(f"config.method.name={name!r} is not one of {list(_REGISTRY)} "
                     "(or 'package.module:Factory', '/path/to/file.py:Factory')")


def get(config: Any, num_classes: int) -> Method:
    """The method of `config` for data with `num_classes` clean classes."""
    name = method_name(config)
    method = factory(name)(config, num_classes)
    missing = [m for m in _REQUIRED if not hasattr(method, m)]
    if missing:
        raise TypeError(f"config.method.name={name!r} built {type(method).__name__}, which lacks "
                        f"{missing} of the Method protocol (subclass dd.methods.MethodBase)")
    return method


__all__ = ["NAMES", "Method", "MethodBase", "autoregressive", "diffusion", "duo", "duo_distill",
           "factory", "get", "learned_order", "method_name", "register", "stratified", "vadd"]
