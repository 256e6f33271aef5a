"""The persistent shell every backend runs commands in (layer 1).

A sandbox keeps one ``bash`` per session. A command is written to its stdin, wrapped so
that it reads ``/dev/null`` (it cannot swallow what follows) and followed by a marker
line carrying its exit status; the output is read up to the marker. State such as the
current directory and exported variables persists between commands. A timeout, an
interrupt or an idle stop tears the whole sandbox down (the subclass says how); the next
command starts a fresh one on the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from agenthost.sandbox.base import CommandResult
from agenthost.sandbox.rooted import RootedFiles

OUTPUT_LIMIT = 4 * 1024 * 1024  # bytes kept from one command before the rest is dropped


class ShellSandbox:
    """A sandbox whose commands run in one persistent shell; subclasses start and stop it."""

    files: RootedFiles

    def __init__(self) -> None:
        self._shell: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _launch(self) -> asyncio.subprocess.Process:
        """Start the sandbox with its shell (stdin and stdout piped, stderr merged into stdout)."""
        raise NotImplementedError

    async def _teardown(self, shell: asyncio.subprocess.Process) -> None:
        """Kill every process of the sandbox, including ones that left the shell's process group."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._shell is not None and self._shell.returncode is None

    async def start(self) -> None:
        """Make sure the sandbox is running (provisioning, or a health check of a running one)."""
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> asyncio.subprocess.Process:
        if self._shell is None or self._shell.returncode is not None:
            if self._shell is not None:
                await self._kill()
            self._shell = await self._launch()
        return self._shell

    async def run(self, command: str, timeout: float) -> CommandResult:
        async with self._lock:
            shell = await self._ensure()
            assert shell.stdin is not None and shell.stdout is not None
            marker = f"__agenthost_done_{secrets.token_hex(8)}__"
            script = f"{{\n{command}\n}} < /dev/null\nprintf '\\n{marker} %d\\n' $?\n"
            try:
                shell.stdin.write(script.encode())
                await shell.stdin.drain()
                output, code = await asyncio.wait_for(_read_until(shell.stdout, marker.encode()), timeout)
            except TimeoutError:
                await self._kill()
                return CommandResult(output="", exit_code=None, timed_out=True)
            except (BrokenPipeError, ConnectionResetError):
                output, code = "", None
            except asyncio.CancelledError:
                await self._kill()
                raise
            if code is None:  # the shell itself exited (`exit 3`): take down what it left behind
                exit_code = await shell.wait()
                await self._kill()
                return CommandResult(output=output, exit_code=exit_code, shell_exited=True)
            return CommandResult(output=output, exit_code=code)

    async def restart(self) -> None:
        async with self._lock:
            await self._kill()

    async def interrupt(self) -> None:
        await self._kill()

    async def close(self) -> None:
        await self._kill()

    async def _kill(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None:
            await self._teardown(shell)
            with contextlib.suppress(ProcessLookupError):
                await shell.wait()


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
            if size < OUTPUT_LIMIT:
                chunks.append(head[: OUTPUT_LIMIT - size])
                size += len(head)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
