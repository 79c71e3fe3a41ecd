"""launch/tpu_pod.sh and launch/slurm_gpu.sbatch: run with fake `gcloud` and `srun` on PATH that
record their arguments, check that every worker runs discrete_diffusion.main with the forwarded
arguments (quoting kept) and the multi-host switch, and that the environment they set makes
`sharding.distributed_settings` ask jax to detect the cluster. (launch/local.py is tested by
tests/test_sharding.py, which trains with it.)"""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from discrete_diffusion import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_LOG/$(basename "$0").$$"
"""


@pytest.fixture
def fake_path(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name in ("gcloud", "srun"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log))
    return env, log


def calls(log, name):
    return [p.read_text().splitlines() for p in sorted(log.glob(f"{name}.*"))]


def test_tpu_pod_runs_main_on_every_worker(fake_path):
    env, log = fake_path
    env.update(TPU_NAME="pod", ZONE="zone-a", PROJECT="proj")
    args = ["--config=configs/owt_absorbing.py", "--workdir=gs://b/run", "--config.data.data_dir=/d x"]
    subprocess.run(["bash", "launch/tpu_pod.sh", *args], env=env, cwd=ROOT, check=True)
    (argv,) = calls(log, "gcloud")
    assert argv[:6] == ["compute", "tpus", "tpu-vm", "ssh", "pod", "--zone=zone-a"]
    assert "--worker=all" in argv and "--project=proj" in argv
    command = next(a for a in argv if a.startswith("--command="))[len("--command="):]
    words = shlex.split(command)
    assert "DD_DISTRIBUTED=1" in words
    i = words.index("discrete_diffusion.main")
    assert words[i - 2: i] == ["python", "-m"] and words[i + 1:] == args


def test_tpu_pod_setup_copies_this_checkout(fake_path):
    env, log = fake_path
    env.update(TPU_NAME="pod", ZONE="zone-a")
    subprocess.run(["bash", "launch/tpu_pod.sh", "--setup"], env=env, cwd=ROOT, check=True)
    scp, ssh = sorted(calls(log, "gcloud"), key=lambda a: a[3])
    assert scp[3] == "scp" and scp[5] == "pod:dd.tar.gz" and "--worker=all" in scp
    assert ssh[3] == "ssh" and any("pip install -e ." in a for a in ssh)


def test_tpu_pod_needs_its_settings(fake_path):
    env, _ = fake_path
    env.pop("TPU_NAME", None)
    res = subprocess.run(["bash", "launch/tpu_pod.sh"], env=env, cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode != 0 and "TPU_NAME" in res.stderr


@pytest.mark.parametrize("per_node, bind", [("0", ["--gpus-per-task=1"]), ("1", [])])
def test_slurm_srun_per_gpu_or_per_node(fake_path, per_node, bind):
    env, log = fake_path
    env["PER_NODE"] = per_node
    args = ["--config=configs/owt_absorbing.py", "--workdir=/shared/run"]
    subprocess.run(["bash", "launch/slurm_gpu.sbatch", *args], env=env, cwd=ROOT, check=True)
    (argv,) = calls(log, "srun")
    assert argv == [*bind, "--kill-on-bad-exit=1", "python", "-m", "discrete_diffusion.main", *args]


def test_cluster_environments_ask_jax_to_detect():
    slurm = {"SLURM_NTASKS": "16", "SLURM_PROCID": "3"}
    assert sharding.distributed_settings(None, slurm) == {}
    assert sharding.distributed_settings(None, {"DD_DISTRIBUTED": "1"}) == {}
    assert sharding.distributed_settings(None, {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert sharding.distributed_settings(None, {**slurm, "DD_DISTRIBUTED": "0"}) is None
