"""Per-sandbox resource limits through cgroups, v1 or v2 (layer 1; issue #4 point 3).

Each sandbox gets its own group, ``agenthost/<server>.<session id>.<launch>``, in the memory,
pids and cpu controllers (v1: one hierarchy each; v2: one unified group), limited before
the sandbox runs anything: a memory hog is OOM-killed inside its group and a fork bomb
hits ``pids.max``, and neither touches the server. The server's pid and start time in the
name let a restarted server tell its predecessor's leftovers from a live neighbour's.

Where the hierarchy is not writable (a server that is not root, a container without a
delegated cgroup) :func:`detect` returns None and the sandbox relies on rlimits and its
PID namespace alone; the server says so at start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PARENT = "agenthost"
_V1 = ("memory", "pids", "cpu")
_CPU_PERIOD = 100_000


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    pids: int
    cpus: float


@dataclass(frozen=True)
class Cgroup:
    """One sandbox's group (one directory per v1 controller, or one v2 directory)."""

    paths: tuple[Path, ...]
    v2: bool

    def add(self, pid: int) -> None:
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(line) for line in (self.paths[0] / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def kill(self) -> None:
        """SIGKILL every process in the group, including ones that called ``setsid``."""
        killer = self.paths[0] / "cgroup.kill"
        if self.v2 and killer.exists():
            with contextlib.suppress(OSError):
                killer.write_text("1")
        for _ in range(50):  # v1 has no cgroup.kill: kill until nothing is left (forks race the loop)
            remaining = self.pids()
            if not remaining:
                return
            for pid in remaining:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)  # noqa: TID251 - runs in a worker thread (asyncio.to_thread)

    def remove(self) -> None:
        self.kill()
        for path in self.paths:
            for _ in range(100):  # rmdir fails with EBUSY until the killed tasks are reaped
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)  # noqa: TID251 - a worker thread

    def memory_events(self) -> str:
        """The kernel's OOM counters for the group (for messages and tests)."""
        for path in self.paths:
            for name in ("memory.events", "memory.oom_control"):
                if (path / name).exists():
                    return (path / name).read_text()
        return ""


class CgroupTree:
    """Where this machine's cgroups are, and how to make a limited group there."""

    def __init__(self, root: Path, v2: bool):
        self.root = root
        self.v2 = v2

    def parents(self) -> list[Path]:
        """The directories holding agenthost's groups: one per v1 controller, or one v2 directory."""
        return [self.root / PARENT] if self.v2 else [self.root / controller / PARENT for controller in _V1]

    def create(self, session_id: str, limits: Limits) -> Cgroup:
        # One group per launch: the teardown of a stopped sandbox never hits its successor's group.
        name = f"{server_identity()}.{session_id}.{secrets.token_hex(4)}"
        paths = tuple(parent / name for parent in self.parents())
        for path in paths:
            path.mkdir(exist_ok=True)
        group = Cgroup(paths, self.v2)
        if self.v2:
            path = paths[0]
            _write(path / "memory.max", limits.memory_bytes)
            _write(path / "memory.swap.max", 0, optional=True)
            _write(path / "pids.max", limits.pids)
            _write(path / "cpu.max", f"{int(limits.cpus * _CPU_PERIOD)} {_CPU_PERIOD}")
        else:
            memory, pids, cpu = paths
            _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
            _write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes, optional=True)
            _write(pids / "pids.max", limits.pids)
            _write(cpu / "cpu.cfs_period_us", _CPU_PERIOD)
            _write(cpu / "cpu.cfs_quota_us", int(limits.cpus * _CPU_PERIOD))
        return group

    def leftovers(self) -> list[Cgroup]:
        """Groups whose server process is gone (a crash or SIGKILL left them)."""
        found: dict[str, list[Path]] = {}
        for parent in self.parents():
            with contextlib.suppress(FileNotFoundError):
                for entry in parent.iterdir():
                    if entry.is_dir():
                        found.setdefault(entry.name, []).append(entry)
        stale = []
        for name, paths in found.items():
            if not identity_alive(name.partition(".")[0]):
                stale.append(Cgroup(tuple(paths), self.v2))
        return stale


def _start_time(pid: int) -> str | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat_line.rpartition(")")[2].split()[19]  # field 22, starttime (the name may hold spaces)


def server_identity() -> str:
    """This process as ``<pid>-<start time>``: unlike a bare pid, never the same for a restarted server
    (a server in a container is pid 1 every time)."""
    pid = os.getpid()
    return f"{pid}-{_start_time(pid) or 0}"


def identity_alive(identity: str) -> bool:
    """Whether the process a :func:`server_identity` (or a bare pid) names still runs on this host."""
    pid_text, _, started = identity.partition("-")
    if not pid_text.isdigit():
        return True  # not ours to judge
    if not process_alive(int(pid_text)):
        return False
    return not started or _start_time(int(pid_text)) == started


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(path: Path, value: object, *, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except FileNotFoundError:
        if not optional:
            raise


def detect(root: Path = Path("/sys/fs/cgroup")) -> CgroupTree | None:
    """The writable cgroup hierarchy of this machine, prepared for sandboxes; None when there is none."""
    v1 = all((root / controller / "cgroup.procs").exists() for controller in _V1)
    v2 = not v1 and (root / "cgroup.controllers").exists()
    if not v1 and not v2:
        return None
    tree = CgroupTree(root, v2)
    try:
        for parent in tree.parents():
            parent.mkdir(exist_ok=True)
        if v2:
            wanted = {"memory", "pids", "cpu"}
            available = set((root / "cgroup.controllers").read_text().split())
            if not wanted <= available:
                return None
            enable = " ".join(f"+{name}" for name in sorted(wanted))
            (root / "cgroup.subtree_control").write_text(enable)
            (root / PARENT / "cgroup.subtree_control").write_text(enable)
    except OSError:
        return None
    return tree
