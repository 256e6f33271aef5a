"""Sandbox processes whose server is gone, found and killed at start (layer 1).

A bwrap sandbox gets its parent-death signal only once it is released from ``--block-fd``:
a server killed (or a start cancelled) in the milliseconds before that leaves the sandbox's
first process running, re-parented to init, in no cgroup. Every bwrap the server starts
carries two variables in its own environment (the sandbox's shell does not see them:
``--clearenv``): the sandboxes' root and its owner, the server's pid and start time. At start a
server kills each process of its root whose owner is no longer that process, and leaves the
sandboxes of live servers that share the root alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

log = logging.getLogger("agenthost.sandbox")

ROOT = "AGENTHOST_SANDBOX_ROOT"
OWNER = "AGENTHOST_SANDBOX_OWNER"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def owner_mark() -> str:
    """This process as an owner: pid and start time, so a recycled pid is never taken for it."""
    return f"{os.getpid()}:{_start_time(os.getpid())}"


def marks(root: Path) -> dict[str, str]:
    """The variables a sandbox process of ``root`` started by this process carries."""
    return {ROOT: str(root), OWNER: owner_mark()}


def _alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    return pid.isdigit() and started != "None" and _start_time(int(pid)) == started


def orphans(root: Path) -> list[int]:
    """Pids of sandbox processes of ``root`` whose owner is gone."""
    found = []
    wanted = f"{ROOT}={root}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            variables = proc.joinpath("environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if wanted not in variables:
            continue
        owner = next((v.partition(b"=")[2].decode() for v in variables if v.startswith(f"{OWNER}=".encode())), "")
        if not _alive(owner):
            found.append(int(proc.name))
    return found


def kill_orphans(root: Path) -> int:
    """SIGKILL every orphan of ``root`` (its namespace and processes end with it); how many there were."""
    pids = orphans(root)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log.warning("killed %d sandbox process(es) left by a server that is gone", len(pids))
    return len(pids)
