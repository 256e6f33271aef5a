"""Sandbox processes whose server is gone, found and killed at start (layer 1).

A bwrap sandbox gets its parent-death signal only once it is released from ``--block-fd``:
a server killed (or a start cancelled) in the milliseconds before that leaves the sandbox's
first process running, re-parented to init, in no cgroup. Every bwrap the server starts
carries two variables in its own environment (the sandbox's shell does not see them:
``--clearenv``): the sandboxes' root and its owner, the server's pid, start time and pid
namespace. At start a server kills each process of its root whose owner, in its own pid
namespace, is no longer that process; it leaves alone the sandboxes of live servers that share
the root, and those of servers in other pid namespaces, whose pids it cannot judge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

from agenthost.sandbox.cgroups import identity_alive, server_identity

log = logging.getLogger("agenthost.sandbox")

ROOT = "AGENTHOST_SANDBOX_ROOT"
OWNER = "AGENTHOST_SANDBOX_OWNER"


def pid_namespace() -> str:
    """This process's pid namespace: a pid means something only inside the namespace it was read in."""
    return str(os.stat("/proc/self/ns/pid").st_ino)


def owner_mark() -> str:
    """This process as an owner: its pid and start time (a recycled pid is not taken for it), and its namespace."""
    return f"{server_identity()}@{pid_namespace()}"


def marks(root: Path) -> dict[str, str]:
    """The variables a sandbox process of ``root`` started by this process carries."""
    return {ROOT: str(root), OWNER: owner_mark()}


def _orphaned(owner: str) -> bool:
    identity, _, namespace = owner.partition("@")
    if namespace != pid_namespace():  # a server in another pid namespace (a container): not ours to judge
        return False
    return not identity_alive(identity)


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
        if _orphaned(owner):
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
