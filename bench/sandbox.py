"""Sandbox cold start and the persistent shell's round trip, per backend, side by side in one run.

    python bench/sandbox.py [--starts 50] [--commands 1000]

Runs the backends directly (no HTTP, no model): for each, N sandboxes are started and
closed one after another (cold start: from `get` to a shell ready for commands, which for
bwrap includes its cgroup and the egress proxy socket in its network namespace), then one
sandbox runs `true` M times (round trip: command written to the shell, marker read back).
Prints p50/p90 in ms. Backends that cannot run here are reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agenthost.sandbox.base import NetworkPolicy, SandboxBackend, SandboxSpec  # noqa: E402
from agenthost.sandbox.bwrap import BwrapBackend, BwrapUnavailable
from agenthost.sandbox.cgroups import Limits  # noqa: E402
from agenthost.sandbox.docker import DockerBackend  # noqa: E402
from agenthost.sandbox.host import SandboxConfig  # noqa: E402
from agenthost.sandbox.local import LocalBackend  # noqa: E402


def quantiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=10)
    return f"p50 {statistics.median(samples):7.3f} ms  p90 {cuts[8]:7.3f} ms  (n={len(samples)})"


async def measure(name: str, backend: SandboxBackend, starts: int, commands: int) -> None:
    spec_policy = NetworkPolicy(unrestricted=False, allowed_hosts=("pypi.org",))
    cold: list[float] = []
    first: list[float] = []
    for index in range(starts + 1):
        spec = SandboxSpec(f"sesn_bench{index:06d}", spec_policy)
        began = time.perf_counter()
        sandbox = await backend.get(spec)
        await sandbox.start()
        ready = time.perf_counter()
        result = await sandbox.run("true", 10)
        done = time.perf_counter()
        assert result.exit_code == 0, result
        if index:  # the first start warms caches
            cold.append((ready - began) * 1000)
            first.append((done - began) * 1000)
        await backend.destroy(spec.session_id)
    sandbox = await backend.get(SandboxSpec("sesn_benchrt", spec_policy))
    await sandbox.run("true", 10)
    trips = []
    for _ in range(commands):
        began = time.perf_counter()
        await sandbox.run("true", 10)
        trips.append((time.perf_counter() - began) * 1000)
    await backend.destroy("sesn_benchrt")
    print(f"{name:6} cold start            {quantiles(cold)}")
    print(f"{name:6} start + first command {quantiles(first)}")
    print(f"{name:6} bash round trip       {quantiles(trips)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--docker-host", help="a Docker engine to measure the docker backend on (unix://...)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="agenthost-bench-"))
    root.chmod(0o711)
    print(f"{os.cpu_count()} cpus, euid {os.geteuid()}, {sys.version.split()[0]}")
    try:
        try:
            bwrap = BwrapBackend(root / "bwrap", SandboxConfig(Limits(1 << 30, 256, 1.0)))
            (root / "bwrap").mkdir(mode=0o711)
            await measure("bwrap", bwrap, args.starts, args.commands)
            await bwrap.close()
        except BwrapUnavailable as exc:
            print(f"bwrap  skipped: {exc}")
        local = LocalBackend(root / "local")
        await measure("local", local, args.starts, args.commands)
        await local.close()
        if args.docker_host:
            docker = DockerBackend(
                root / "docker", SandboxConfig(Limits(1 << 30, 256, 1.0)), image=None, docker_host=args.docker_host
            )
            (root / "docker").mkdir(mode=0o711)
            await measure("docker", docker, args.starts, args.commands)
            await docker.close()
        else:
            print("docker not measured: pass --docker-host")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
