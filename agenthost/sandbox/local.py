"""The local directory backend (layer 1): UNSAFE, no isolation at all.

Commands run as the server's own user, see the host's files and network, and inherit
nothing but a minimal environment. It exists for development on a trusted machine and
for hosts where bubblewrap cannot run, and is used only when the operator chooses it
(``AGENTHOST_SANDBOX=local``); never expose a server using it to untrusted agents or
prompts. The file tools are still confined to the workspace.

Each session's persistent ``bash`` runs in its own process group in
``<root>/<session_id>/workspace``; a timeout or an interrupt kills that group (a process
that called ``setsid`` escapes it: that takes the bubblewrap backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from agenthost.sandbox.base import SandboxSpec, SandboxUnavailable
from agenthost.sandbox.directories import SessionDirs, session_ids_on_disk
from agenthost.sandbox.shell import ShellSandbox


class LocalSandbox(ShellSandbox):
    """A workspace directory and a persistent shell in it."""

    def __init__(self, backend: LocalBackend, spec: SandboxSpec, dirs: SessionDirs):
        super().__init__()
        self.backend = backend
        self.spec = spec
        self.dirs = dirs
        self.files = dirs.files(None, session_mounts=False)

    async def _launch(self) -> asyncio.subprocess.Process:
        await self.backend.prepare(self.spec)
        workspace = self.dirs.workspace
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workspace),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PWD": str(workspace),
        }
        return await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            cwd=workspace,
            env=env,
            start_new_session=True,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def _teardown(self, shell: asyncio.subprocess.Process) -> None:
        # Even when the shell itself has exited, its process group may live on (`sleep 1000 & exit`).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(shell.pid, signal.SIGKILL)


class LocalBackend:
    """Sandboxes as plain directories under ``root`` (see the module warning)."""

    name = "local"

    def __init__(self, root: Path):
        self.root = root
        self._sandboxes: dict[str, LocalSandbox] = {}

    async def get(self, spec: SandboxSpec) -> LocalSandbox:
        sandbox = self._sandboxes.get(spec.session_id)
        if sandbox is None or sandbox.spec != spec:
            if sandbox is not None:
                await sandbox.close()
            dirs = SessionDirs(self.root / spec.session_id)
            await asyncio.to_thread(dirs.create, None)
            sandbox = self._sandboxes[spec.session_id] = LocalSandbox(self, spec, dirs)
        return sandbox

    async def prepare(self, spec: SandboxSpec) -> None:
        if spec.packages:
            raise SandboxUnavailable(
                "the local sandbox backend cannot install environment packages; use the bwrap backend"
            )

    async def stop(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def destroy(self, session_id: str) -> None:
        await self.stop(session_id)
        await asyncio.to_thread(SessionDirs(self.root / session_id).remove)

    async def reconcile(self, existing: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        on_disk = await asyncio.to_thread(session_ids_on_disk, self.root)  # before the sessions are read
        live = await existing(on_disk)
        for session_id in on_disk:
            if session_id not in live:
                await asyncio.to_thread(SessionDirs(self.root / session_id).remove)

    def live(self) -> int:
        return len(self._sandboxes)

    async def close(self) -> None:
        for session_id in list(self._sandboxes):
            await self.stop(session_id)
