"""The bubblewrap backend driven directly, for what no session can time: a start cancelled
half-way, and a package build that plants traps for the server (security review findings).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenthost.sandbox import leftovers
from agenthost.sandbox.base import CommandResult, NetworkPolicy, Packages, SandboxSpec
from agenthost.sandbox.bwrap import BwrapBackend
from agenthost.sandbox.cgroups import Limits
from agenthost.sandbox.directories import remove_tree
from agenthost.sandbox.host import PATH, SandboxConfig
from tests.conftest import needs_bwrap, needs_root, run_async, sandbox_dir, sleepers, wait_until

pytestmark = [needs_bwrap, needs_root]


@pytest.fixture
def root() -> Iterator[Path]:
    path = sandbox_dir()
    yield path
    remove_tree(path)


def _processes_of(uid: int) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid == uid:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_start_cancelled_at_any_point_leaves_nothing_running(root: Path) -> None:
    async def scenario() -> int:
        backend = BwrapBackend(root, SandboxConfig(Limits(256 << 20, 64, 1.0)))
        spec = SandboxSpec("sesn_cancelled0000000000000000", NetworkPolicy())
        sandbox = await backend.get(spec)
        for delay in (0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016):
            task = asyncio.create_task(sandbox.run("echo started", 10))
            await asyncio.sleep(delay)
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)  # never hangs
        result = await sandbox.run("echo still usable", 10)
        assert result.output.strip() == "still usable"
        await backend.close()
        return backend.uid_for(spec.session_id)

    uid = run_async(scenario())
    wait_until(lambda: not _processes_of(uid), timeout=10)  # killed ones are reaped within moments


def test_at_start_sandbox_processes_of_a_gone_server_are_killed_and_a_live_servers_kept(root: Path) -> None:
    """What a server killed in a sandbox's first milliseconds leaves: bwrap with no parent and no cgroup."""
    marker_gone, marker_live, marker_other, marker_foreign = (f"{os.getpid()}700{n}" for n in (1, 2, 3, 4))
    bwrap = shutil.which("bwrap")
    assert bwrap is not None

    def start(marker: str, owner: str, root: Path = root) -> subprocess.Popen[bytes]:
        env = {"PATH": PATH, leftovers.ROOT: str(root), leftovers.OWNER: owner}
        argv = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--dev", "/dev", "--proc", "/proc", "sleep", marker]
        return subprocess.Popen(argv, env=env, start_new_session=True)

    gone = start(marker_gone, f"1-0@{leftovers.pid_namespace()}")  # pid 1 never started at tick 0: gone
    live = start(marker_live, leftovers.owner_mark())  # this process: alive, so not an orphan
    elsewhere = start(marker_other, f"1-0@{leftovers.pid_namespace()}", root=root / "other")  # another root's
    foreign = start(marker_foreign, "1-0@1")  # a server in another pid namespace: its pids are not ours to judge
    try:
        markers = (marker_gone, marker_live, marker_other, marker_foreign)
        wait_until(lambda: all(sleepers(m) for m in markers), timeout=30)

        async def restart() -> None:
            backend = BwrapBackend(root, SandboxConfig(Limits(256 << 20, 64, 1.0)))

            async def existing(ids: list[str]) -> set[str]:
                return set(ids)

            await backend.reconcile(existing)
            await backend.close()

        run_async(restart())
        wait_until(lambda: not sleepers(marker_gone), timeout=30)
        assert sleepers(marker_live) and sleepers(marker_other) and sleepers(marker_foreign)
    finally:
        for process in (gone, live, elsewhere, foreign):
            process.kill()
            process.wait(timeout=30)


def test_a_package_build_cannot_make_the_server_write_through_its_files(root: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    victim.chmod(0o600)

    async def scenario() -> Path:
        backend = BwrapBackend(root, SandboxConfig(Limits(256 << 20, 64, 1.0)))
        spec = SandboxSpec("sesn_builder000000000000000000", NetworkPolicy(), Packages(pip=("anything",)))

        async def hostile(spec: SandboxSpec, into: Path, command: str) -> CommandResult:
            # What an install script could do: plant symlinks and FIFOs where a server might write.
            planted = (
                f"ln -s {victim} /opt/agenthost/.complete; mkfifo /opt/agenthost/fifo; echo built > /opt/agenthost/ok"
            )
            return await backend._build(spec, into, planted)

        built = await asyncio.wait_for(backend.packages.ensure(spec, hostile), 60)
        await backend.close()
        return built

    built = run_async(scenario())
    assert victim.read_text() == "untouched"
    assert (built / "ok").read_text() == "built\n"
    marker = built.with_name(built.name + ".complete")
    assert stat.S_ISREG(os.lstat(marker).st_mode) and os.lstat(marker).st_uid == 0
