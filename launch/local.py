"""Start N cooperating processes on this machine (multi-process JAX on one host, e.g. to test).

    python launch/local.py --num_processes=2 [--devices_per_process=4] [--port=0] \
        --config=configs/synthetic_absorbing.py --workdir=/tmp/run [--config.training.num_steps=5 ...]

Every argument the launcher does not know is forwarded to `python -m discrete_diffusion.main`
(`--module` picks another entry point). Process i gets DD_COORDINATOR_ADDRESS=127.0.0.1:PORT,
DD_NUM_PROCESSES=N and DD_PROCESS_ID=i, which `discrete_diffusion.sharding.initialize_distributed`
reads (collectives on CPU go through gloo, jax's default). `--devices_per_process=K` forces K CPU
devices per process (XLA_FLAGS=--xla_force_host_platform_device_count=K), so N x K devices in all.
Output lines are streamed prefixed by "[pI] ". If any process fails, the others are stopped and
the launcher exits with that process's status; it exits 0 when all succeed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """An unused localhost port (portpicker, installed as a grain dependency, or the OS's pick)."""
    try:
        import portpicker

        return int(portpicker.pick_unused_port())
    except ImportError:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--num_processes", type=int, required=True, help="Processes to start (>= 1).")
    p.add_argument("--devices_per_process", type=int, default=0,
                   help="Force this many CPU devices per process (0: leave XLA_FLAGS alone).")
    p.add_argument("--port", type=int, default=0, help="Coordinator port (0: a free one).")
    p.add_argument("--module", default="discrete_diffusion.main", help="python -m MODULE to run.")
    p.add_argument("--timeout", type=float, default=0.0, help="Stop all after this many s (0: none).")
    args, rest = p.parse_known_args(argv)
    if args.num_processes < 1:
        p.error(f"--num_processes={args.num_processes} must be >= 1")
    if rest and rest[0] == "--":
        rest = rest[1:]
    return args, rest


def process_env(i: int, n: int, address: str, devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DD_COORDINATOR_ADDRESS=address, DD_NUM_PROCESSES=str(n), DD_PROCESS_ID=str(i))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if devices > 0:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
        env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
        env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _stream(proc: subprocess.Popen, prefix: str, lock: threading.Lock) -> None:
    for line in proc.stdout:  # type: ignore[union-attr]
        with lock:
            sys.stdout.write(f"{prefix}{line}")
            sys.stdout.flush()


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(argv: list[str]) -> int:
    """Runs the processes; returns 0 when all succeed, else the first failure's exit status."""
    args, rest = parse(argv)
    address = f"127.0.0.1:{args.port or free_port()}"
    cmd = [sys.executable, "-m", args.module, *rest]
    lock = threading.Lock()
    procs, threads = [], []
    for i in range(args.num_processes):
        env = process_env(i, args.num_processes, address, args.devices_per_process)
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        t = threading.Thread(target=_stream, args=(proc, f"[p{i}] ", lock), daemon=True)
        t.start()
        threads.append(t)
    status, start = 0, time.time()
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed:
                status = failed[0].returncode
                print(f"[launch] process {procs.index(failed[0])} exited with {status}; stopping the "
                      "others", flush=True)
                break
            if args.timeout and time.time() - start > args.timeout:
                print(f"[launch] --timeout={args.timeout:g}s reached; stopping", flush=True)
                status = 124
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        status = 130
    finally:
        _stop(procs)
        for t in threads:
            t.join(5)
    if status == 0:
        status = next((p.returncode for p in procs if p.returncode), 0)
    return int(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
