"""The local directory backend (layer 1): UNSAFE, no isolation at all.

Commands run as the server's own user, see the host's files and network, and inherit
nothing but a minimal environment. It exists so the engine can run tools before the
isolated backends of issue #4 land, and for development on a trusted machine; never
expose a server using it to untrusted agents or prompts.

Each session gets ``<data_dir>/workspaces/<session_id>`` as its ``/workspace`` (kept
across restarts) and one persistent ``bash`` in its own process group, so a timeout or
an interrupt kills the command's whole process tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
from pathlib import Path

from agenthost.sandbox.base import CommandResult

WORKSPACE = "/workspace"
_OUTPUT_LIMIT = 4 * 1024 * 1024  # bytes kept from one command before the rest is dropped


class LocalSandbox:
    """A workspace directory and a persistent shell in it."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self._shell: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    def resolve(self, path: str) -> Path:
        if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
            relative = path[len(WORKSPACE) :].lstrip("/")
        elif path.startswith("/"):
            raise PermissionError(f"{path}: only paths under {WORKSPACE} are reachable")
        else:
            relative = path
        target = (self.workspace / relative).resolve()
        root = self.workspace.resolve()
        if target != root and root not in target.parents:
            raise PermissionError(f"{path}: resolves outside {WORKSPACE}")
        return target

    async def _start(self) -> asyncio.subprocess.Process:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workspace),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PWD": str(self.workspace),
        }
        return await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            cwd=self.workspace,
            env=env,
            start_new_session=True,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def run(self, command: str, timeout: float) -> CommandResult:
        async with self._lock:
            if self._shell is None or self._shell.returncode is not None:
                self._shell = await self._start()
            shell = self._shell
            assert shell.stdin is not None and shell.stdout is not None
            marker = f"__agenthost_done_{secrets.token_hex(8)}__"
            # The command reads /dev/null, not the shell's stdin, so it cannot swallow the marker line.
            script = f"{{\n{command}\n}} < /dev/null\nprintf '\\n{marker} %d\\n' $?\n"
            shell.stdin.write(script.encode())
            await shell.stdin.drain()
            try:
                output, code = await asyncio.wait_for(_read_until(shell.stdout, marker.encode()), timeout)
            except TimeoutError:
                await self._kill()
                return CommandResult(output="", exit_code=None, timed_out=True)
            except asyncio.CancelledError:
                await self._kill()
                raise
            if code is None:  # the shell itself exited (e.g. `exit 3`); reap its process group too
                exit_code = await shell.wait()
                await self._kill()
                return CommandResult(output=output, exit_code=exit_code, shell_exited=True)
            return CommandResult(output=output, exit_code=code)

    async def restart(self) -> None:
        async with self._lock:
            await self._kill()

    async def interrupt(self) -> None:
        await self._kill()

    async def _kill(self) -> None:
        shell, self._shell = self._shell, None
        if shell is None:
            return
        # Even when the shell itself has exited, its process group may live on (`sleep 1000 & exit`).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(shell.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await shell.wait()

    async def close(self) -> None:
        await self._kill()


async def _read_until(stream: asyncio.StreamReader, marker: bytes) -> tuple[str, int | None]:
    """Read the shell's output up to the marker line; return the text before it and the exit code."""
    chunks: list[bytes] = []
    size = 0
    pending = b""
    while True:
        data = await stream.read(65536)
        if not data:
            return _decode(b"".join(chunks) + pending), None
        pending += data
        index = pending.find(b"\n" + marker + b" ")
        if index >= 0:
            end = pending.find(b"\n", index + 1 + len(marker))
            if end >= 0:
                chunks.append(pending[:index])
                code = int(pending[index + 1 + len(marker) + 1 : end])
                return _decode(b"".join(chunks)), code
            continue
        keep = len(marker) + 16
        if len(pending) > keep:
            head, pending = pending[:-keep], pending[-keep:]
            if size < _OUTPUT_LIMIT:
                chunks.append(head[: _OUTPUT_LIMIT - size])
                size += len(head)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class LocalBackend:
    """Sandboxes as plain directories under ``root`` (see the module warning)."""

    def __init__(self, root: Path):
        self.root = root
        self._sandboxes: dict[str, LocalSandbox] = {}

    async def get(self, session_id: str) -> LocalSandbox:
        sandbox = self._sandboxes.get(session_id)
        if sandbox is None:
            workspace = self.root / session_id
            workspace.mkdir(parents=True, exist_ok=True)
            sandbox = self._sandboxes[session_id] = LocalSandbox(workspace)
        return sandbox

    async def stop(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def destroy(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()
        await asyncio.to_thread(shutil.rmtree, self.root / session_id, True)

    async def close(self) -> None:
        for sandbox in list(self._sandboxes.values()):
            await sandbox.close()
        self._sandboxes.clear()
