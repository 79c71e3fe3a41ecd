"""Device mesh, parameter partition rules and multi-host initialisation.

The mesh has three named axes, sized by `config.mesh` (configs/base.py):

    data    pure data parallelism: the batch is split, parameters are replicated
    fsdp    fully-sharded data parallelism: the batch is split AND every large parameter (and its
            optimizer state and EMA) is split along one dimension, gathered by XLA when used
    tensor  megatron-style tensor parallelism: attention heads and the MLP hidden layer are split;
            qkv / MLP-in / adaLN / output-head kernels column-parallel, attention-out / MLP-out
            row-parallel

Each field is an int >= 1 or -1 ("the rest of the devices"; at most one -1); the product must
equal the number of devices. Devices are laid out in `jax.devices()` order (process by process),
with `tensor` innermost, so with several processes each process's devices hold a contiguous block
of the global batch, the block its data pipeline reads (data/pipeline.py).

The batch is sharded over ('data', 'fsdp') on its leading dimension (`batch_spec()`). Parameters
follow `RULES`: an ordered list of (regex over the '/'-joined parameter path, PartitionSpec); the
first regex found (`re.search`) in the path wins, and a parameter no rule matches raises a
ValueError naming its path, so new parameters (Duo, VADD, learned orders, ...) must be given a
rule here. A dimension whose size is not divisible by the size of its mesh axes is replicated
instead (e.g. a masked vocabulary of K + 1 ids over tensor=2): always correct, merely less
sharded. Optimizer state and EMA leaves take the spec of the parameter with the same path and
shape; everything else (step, rng, optimizer counts) is replicated.

Multi-host: call `initialize_distributed(flags)` before anything touches the devices. It calls
`jax.distributed.initialize` when

    * a coordinator is given: `--coordinator_address`, `--num_processes`, `--process_id` (flags of
      discrete_diffusion.main) or the environment variables DD_COORDINATOR_ADDRESS,
      DD_NUM_PROCESSES, DD_PROCESS_ID (launch/local.py sets these); flags win over the environment;
    * or the environment is a multi-process job that jax detects by itself: SLURM (SLURM_NTASKS
      > 1, one process per task, launch/slurm_gpu.sbatch), a Cloud TPU pod (TPU_WORKER_HOSTNAMES /
      TPU_PROCESS_ADDRESSES listing several hosts, or MEGASCALE_COORDINATOR_ADDRESS), or
      DD_DISTRIBUTED=1 (launch/tpu_pod.sh sets it: TPU VMs publish their topology only through
      metadata);

and does nothing in a single process. DD_DISTRIBUTED=0 turns the auto-detection off (e.g. one
python process inside a multi-task SLURM allocation).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# (regex over the '/'-joined path, spec). Shapes: D = d_model, C = cond_dim, V = input vocabulary,
# K = classes, H heads of width Dh, F sinusoidal features (see models/transformer.py).
RULES: tuple[tuple[str, P], ...] = (
    # input embeddings [V, D]: vocabulary over tensor, width over fsdp
    (r"(^|/)(token_embed|noise_embed)/embedding$", P("tensor", "fsdp")),
    (r"(^|/)label_embed/embedding$", P(None, "fsdp")),  # [num_labels + 1, C]
    # learned absolute positions (config.model.pos_embedding='rotary+learned'), also the encoder's
    (r"(^|/)pos_embed$", P(None, "fsdp")),  # [max_len, D]
    (r"(^|/)match_embed$", P()),  # [D]
    # attention: qkv column-parallel over heads, out row-parallel
    (r"(^|/)attn/qkv/kernel$", P("fsdp", None, "tensor", None)),  # [D, 3, H, Dh]
    (r"(^|/)attn/out/kernel$", P("tensor", None, "fsdp")),  # [H, Dh, D]
    # column-parallel dense layers: kernel [in, out], bias [out]
    (r"(^|/)(mlp/fc1|time_embed/fc1|adaln|final/out)/kernel$", P("fsdp", "tensor")),
    (r"(^|/)(mlp/fc1|time_embed/fc1|adaln|final/out)/bias$", P("tensor")),
    # row-parallel dense layers: kernel [in, out], bias [out] (replicated, added after the reduce)
    (r"(^|/)(mlp/fc2|time_embed/fc2)/kernel$", P("tensor", "fsdp")),
    (r"(^|/)(mlp/fc2|time_embed/fc2)/bias$", P()),
    # LayerNorm scales [D]
    (r"(^|/)norm\d*/scale$", P()),
    # the latent embedding of a latent-conditioned network (VADD): [Z, C] then [C, C], like time_embed
    (r"(^|/)latent_embed/fc1/kernel$", P("fsdp", "tensor")),
    (r"(^|/)latent_embed/fc1/bias$", P("tensor")),
    (r"(^|/)latent_embed/fc2/kernel$", P("tensor", "fsdp")),
    (r"(^|/)latent_embed/fc2/bias$", P()),
)

_ENV_COORDINATOR = "DD_COORDINATOR_ADDRESS"
_ENV_NUM_PROCESSES = "DD_NUM_PROCESSES"
_ENV_PROCESS_ID = "DD_PROCESS_ID"
_ENV_DISTRIBUTED = "DD_DISTRIBUTED"


# ----------------------------------------------------------------------------- mesh


def mesh_fields(mesh_config: Any) -> tuple[int, int, int]:
    """Validated (data, fsdp, tensor) of `config.mesh`, possibly with one -1.

    Absent fields (or a missing section) default to data=-1, fsdp=1, tensor=1. Raises ValueError
    naming the field and its allowed values.
    """
    cfg = {} if mesh_config is None else mesh_config
    unknown = sorted(set(cfg.keys()) - set(AXES))
    if unknown:
        raise ValueError(f"config.mesh.{unknown[0]} is not a mesh axis; the fields are {list(AXES)}")
    sizes = []
    for axis, default in zip(AXES, (-1, 1, 1), strict=True):
        n = cfg.get(axis, default)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or (n < 1 and n != -1):
            raise ValueError(
                f"config.mesh.{axis}={n!r} must be -1 (the rest of the devices) or an int >= 1"
            )
        sizes.append(int(n))
    if sizes.count(-1) > 1:
        fields = [f"config.mesh.{a}" for a, n in zip(AXES, sizes, strict=True) if n == -1]
        raise ValueError(f"at most one of {fields} may be -1 (the rest of the devices)")
    return tuple(sizes)  # type: ignore[return-value]


def mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) of `config.mesh` over `num_devices` devices, the -1 filled in.

    Raises ValueError (see `mesh_fields`) or when the product differs from `num_devices`.
    """
    sizes = list(mesh_fields(mesh_config))
    known = math.prod(n for n in sizes if n != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(
                f"config.mesh (data, fsdp, tensor)={tuple(sizes)}: {num_devices} devices are not "
                f"divisible by the product of the fixed fields, {known}"
            )
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"config.mesh (data, fsdp, tensor)={tuple(sizes)} needs {math.prod(sizes)} devices, but "
            f"there are {num_devices}; make the product equal the device count or set one field to -1"
        )
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(config: Any, devices: Sequence[Any] | None = None) -> Mesh:
    """The ('data', 'fsdp', 'tensor') mesh of `config.mesh` over `devices` (default all).

    Built with `Mesh` directly, so the axes are Auto (jit/GSPMD propagates shardings);
    `jax.make_mesh` would default to Explicit axes in this jax version.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(config.get("mesh", None), len(devices))
    return Mesh(np.array(devices, dtype=object).reshape(shape), AXES)


def batch_spec() -> P:
    """Leading (batch) dimension over ('data', 'fsdp'); the other dimensions replicated."""
    return P(BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, batch_spec())


def batch_divisor(mesh: Mesh) -> int:
    """The global batch size must be a multiple of this (data x fsdp)."""
    return int(mesh.shape["data"] * mesh.shape["fsdp"])


# ----------------------------------------------------------------------------- partition rules


def path_str(path: Sequence[Any]) -> str:
    """'/'-joined names of a jax key path, keeping only dict keys (params trees are dicts)."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
    return "/".join(parts)


def spec_for(path: str, shape: Sequence[int], rules: Sequence[tuple[str, P]] = RULES) -> P:
    """The spec of the first rule whose regex is found in `path`; ValueError when none is."""
    for pattern, spec in rules:
        if re.search(pattern, path):
            if len(spec) > len(shape):
                raise ValueError(
                    f"partition rule {pattern!r} -> {spec} has {len(spec)} dims but parameter "
                    f"{path!r} has shape {tuple(shape)}"
                )
            return spec
    raise ValueError(
        f"no partition rule matches parameter {path!r} (shape {tuple(shape)}); add one to "
        "discrete_diffusion.sharding.RULES"
    )


def fit_spec(spec: P, shape: Sequence[int], mesh: Mesh | Mapping[str, int]) -> P:
    """`spec` with every dimension not divisible by its mesh axes' size replicated instead."""
    sizes = dict(mesh.shape) if isinstance(mesh, Mesh) else dict(mesh)
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        if axes is None:
            out.append(None)
            continue
        names = axes if isinstance(axes, tuple) else (axes,)
        n = math.prod(sizes[a] for a in names)
        out.append(axes if dim % n == 0 else None)
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def param_specs(params: Any, rules: Sequence[tuple[str, P]] = RULES, mesh: Mesh | None = None) -> Any:
    """Pytree of PartitionSpecs for `params` (arrays or ShapeDtypeStructs).

    With `mesh`, dimensions not divisible by their axes' size fall back to replicated.
    """

    def one(path, x):
        spec = spec_for(path_str(path), x.shape, rules)
        return fit_spec(spec, x.shape, mesh) if mesh is not None else spec

    return jax.tree_util.tree_map_with_path(one, params)


def state_specs(state: Any, mesh: Mesh, rules: Sequence[tuple[str, P]] = RULES) -> Any:
    """Specs of a whole train state (anything holding `.params`, or a bare params tree).

    Leaves with the path (dict keys only) and shape of a parameter take its spec: the EMA and
    optimizer moments follow the parameters. Every other leaf (step, rng, counts) is replicated.
    """
    params = getattr(state, "params", state)
    by_path = {}
    for path, x in jax.tree_util.tree_leaves_with_path(params):
        by_path[path_str(path)] = (tuple(x.shape), fit_spec(spec_for(path_str(path), x.shape, rules),
                                                           x.shape, mesh))

    def one(path, x):
        shape = tuple(getattr(x, "shape", ()))
        hit = by_path.get(path_str(path))
        if shape and hit is not None and hit[0] == shape:
            return hit[1]
        return P()

    return jax.tree_util.tree_map_with_path(one, state)


def state_shardings(mesh: Mesh, state_abstract: Any, rules: Sequence[tuple[str, P]] = RULES) -> Any:
    """NamedShardings of a train state (see `state_specs`), e.g. of `jax.eval_shape(init, key)`."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s), state_specs(state_abstract, mesh, rules),
                        is_leaf=lambda s: isinstance(s, P))


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `tree` carrying `shardings` (the target of a checkpoint restore)."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def to_host(x: jax.Array) -> np.ndarray:
    """A numpy copy of a global array on every process (all-gathered when not addressable)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


# ----------------------------------------------------------------------------- multi-host


def _setting(source: Any, name: str, env: Mapping[str, str], env_name: str) -> Any:
    value = None
    if source is not None:
        value = source.get(name, None) if isinstance(source, Mapping) else getattr(source, name, None)
    if value is None or value == "":
        value = env.get(env_name) or None
    return value


def _int_setting(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--{name}={value!r} must be an integer") from None


def _multi_host_env(env: Mapping[str, str]) -> bool:
    """True when the environment describes a multi-process job that jax can auto-detect."""
    flag = env.get(_ENV_DISTRIBUTED, "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag:
        raise ValueError(f"{_ENV_DISTRIBUTED}={env[_ENV_DISTRIBUTED]!r} is not one of ['0', '1']")
    with_slurm = env.get("SLURM_NTASKS", "1").isdigit() and int(env.get("SLURM_NTASKS", "1")) > 1
    if with_slurm and "SLURM_PROCID" in env:
        return True
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    return "," in hosts or bool(env.get("MEGASCALE_COORDINATOR_ADDRESS"))


def distributed_settings(source: Any = None, environ: Mapping[str, str] | None = None) -> dict | None:
    """Keyword arguments for `jax.distributed.initialize`, or None for a single process.

    `source`: absl flags, a mapping or any object with `coordinator_address`, `num_processes`,
    `process_id` (None/empty = unset); unset values come from DD_COORDINATOR_ADDRESS,
    DD_NUM_PROCESSES, DD_PROCESS_ID. `{}` means "let jax detect the cluster" (SLURM, TPU pod).
    """
    env = os.environ if environ is None else environ
    address = _setting(source, "coordinator_address", env, _ENV_COORDINATOR)
    num = _int_setting(_setting(source, "num_processes", env, _ENV_NUM_PROCESSES), "num_processes")
    pid = _int_setting(_setting(source, "process_id", env, _ENV_PROCESS_ID), "process_id")
    if address is not None:
        if num is None or pid is None:
            raise ValueError(
                "--coordinator_address needs --num_processes and --process_id (or "
                f"{_ENV_NUM_PROCESSES} and {_ENV_PROCESS_ID})"
            )
        if num < 1 or not 0 <= pid < num:
            raise ValueError(f"--process_id={pid} must lie in [0, --num_processes={num}) with num >= 1")
        if num == 1:
            return None
        return {"coordinator_address": str(address), "num_processes": num, "process_id": pid}
    if num is not None and num > 1:
        raise ValueError(
            f"--num_processes={num} needs --coordinator_address (or {_ENV_COORDINATOR}), host:port "
            "of process 0"
        )
    return {} if _multi_host_env(env) else None


def initialize_distributed(source: Any = None, environ: Mapping[str, str] | None = None) -> bool:
    """`jax.distributed.initialize` for a multi-process run (see the module doc); no-op otherwise.

    Call before anything touches the devices. Returns True when running multi-process.
    """
    settings = distributed_settings(source, environ)
    if settings is None:
        return False
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(**settings)
    return True


__all__ = [
    "AXES", "BATCH_AXES", "RULES", "abstract_with_shardings", "batch_divisor", "batch_sharding",
    "batch_spec", "distributed_settings", "fit_spec", "initialize_distributed", "make_mesh",
    "mesh_fields", "mesh_shape", "param_specs", "path_str", "spec_for", "state_shardings",
    "state_specs", "to_host",
]
