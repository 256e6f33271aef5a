"""The sandbox interface (layer 1; issue #3 point 7, the isolated backends are issue #4).

A backend makes one :class:`Sandbox` per session. A sandbox runs shell commands in a
persistent shell and reads and writes files under its ``/workspace``, whatever the
backend does to contain them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class CommandResult:
    """What a shell command printed (stdout and stderr interleaved) and how it ended."""

    output: str
    exit_code: int | None
    timed_out: bool = False
    shell_exited: bool = False
    """The command ended the persistent shell itself (``exit``); the next command gets a new one."""


class Sandbox(Protocol):
    """One session's execution environment."""

    workspace: Path
    """Host directory that the sandbox sees as ``/workspace``."""

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run a command in the session's persistent shell; kill its process tree on timeout."""
        ...

    async def restart(self) -> None:
        """Replace the persistent shell with a fresh one."""
        ...

    async def interrupt(self) -> None:
        """Kill whatever the shell is running now (the shell itself is restarted on next use)."""
        ...

    async def close(self) -> None:
        """Stop every process of the sandbox; the workspace stays on disk."""
        ...

    def resolve(self, path: str) -> Path:
        """Map a path the agent gave (absolute under /workspace, or relative to it) to a host path inside it."""
        ...


class SandboxBackend(Protocol):
    """Makes and finds sandboxes."""

    async def get(self, session_id: str) -> Sandbox:
        """The session's sandbox, created (with its workspace) on first use."""
        ...

    async def destroy(self, session_id: str) -> None:
        """Stop the session's sandbox and delete its workspace."""
        ...

    async def stop(self, session_id: str) -> None:
        """Stop the session's processes (it went idle); the workspace stays for the next turn."""
        ...

    async def close(self) -> None:
        """Stop every sandbox (server shutdown); workspaces stay."""
        ...
