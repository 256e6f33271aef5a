"""Remote MCP servers of an agent (layer 2): connect, list tools, call them.

The engine opens one :class:`MCPConnection` per server for a run, over streamable HTTP with
the official ``mcp`` SDK, and closes it when the run ends. The server's credential (from the
session's vaults) travels only in the ``Authorization`` header of this process's requests:
it never reaches the sandbox, an event or a log line.

The model sees an MCP tool as ``mcp__<server>__<tool>`` (a name custom tools may not take);
events carry the server name and the tool's own name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx2

from agenthost.tools.base import ToolOutput

if TYPE_CHECKING:
    from mcp.client.client import Client

CONNECT_TIMEOUT = 15.0
CALL_TIMEOUT = 300.0
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def mcp_tool_name(server: str, tool: str) -> str:
    """The name the model calls an MCP tool by: ``mcp__<server>__<tool>``, at most 128 characters."""
    name = f"mcp__{_UNSAFE.sub('_', server)}__{_UNSAFE.sub('_', tool)}"
    if len(name) <= 128:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:12]
    return f"{name[:115]}_{digest}"


class MCPFailure(Exception):
    """A server could not be used; ``kind`` is the session.error type."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class MCPTool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class MCPConnection:
    """One MCP server for the length of a run.

    The MCP client lives in a task of its own, from connecting to closing: its task groups belong
    to that task, so a server that goes away cancels that task, never the run that calls tools.
    """

    name: str
    url: str
    token: str | None = None
    tools: list[MCPTool] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """The HTTP status of every response the server gave (to tell a refused credential from a failure)."""
    _client: Client | None = None
    _task: asyncio.Task[None] | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self) -> list[MCPTool]:
        """Connect and list the server's tools; MCPFailure names what went wrong."""
        ready: asyncio.Future[list[MCPTool]] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(ready), name=f"mcp-{self.name}")
        try:
            self.tools = await asyncio.shield(ready)
        except asyncio.CancelledError:
            await self.close()
            raise
        return self.tools

    async def _serve(self, ready: asyncio.Future[list[MCPTool]]) -> None:
        # Imported here: the mcp SDK costs ~50 MiB, paid only by processes whose agents use MCP servers.
        from mcp.client.client import Client
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}

        async def record(response: httpx2.Response) -> None:
            self.statuses.append(response.status_code)

        try:
            async with (
                httpx2.AsyncClient(
                    headers=headers,
                    timeout=httpx2.Timeout(CALL_TIMEOUT, connect=CONNECT_TIMEOUT),
                    event_hooks={"response": [record]},
                ) as http,
                Client(streamable_http_client(self.url, http_client=http), read_timeout_seconds=CALL_TIMEOUT) as client,
            ):
                listed: list[MCPTool] = []
                cursor: str | None = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    listed += [MCPTool(t.name, t.description or "", dict(t.input_schema)) for t in page.tools]
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self._client = client
                ready.set_result(listed)
                await self._closing.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to open(), or the connection just ends
            if not ready.done():
                if isinstance(exc, Exception | ExceptionGroup):
                    ready.set_exception(self._failure(exc))
                else:
                    gone = MCPFailure("mcp_connection_failed_error", f"MCP server {self.name!r} went away")
                    ready.set_exception(gone)
        finally:
            self._client = None

    def _failure(self, exc: BaseException) -> MCPFailure:
        if any(status in (401, 403) for status in self.statuses):
            return MCPFailure(
                "mcp_authentication_failed_error",
                f"MCP server {self.name!r} refused the credential ({self.statuses[-1]})"
                if self.token
                else f"MCP server {self.name!r} requires authentication and the session's vaults have no "
                "credential for its URL",
            )
        reason = f"could not connect to MCP server {self.name!r}: {_cause(exc)}"
        return MCPFailure("mcp_connection_failed_error", reason)

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        """Call a tool; a failure (the server gone, a protocol error) is an error result the model can read."""
        client, serving = self._client, self._task
        if client is None or serving is None or serving.done():
            return ToolOutput.text(f"MCP server {self.name!r} is not connected.", is_error=True)
        calling = asyncio.ensure_future(client.call_tool(tool, arguments))
        try:
            await asyncio.wait({calling, serving}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the run's interrupt
            calling.cancel()
            raise
        if not calling.done():  # the connection ended first
            calling.cancel()
            with contextlib.suppress(BaseException):
                await calling
            return ToolOutput.text(f"The MCP server {self.name!r} went away during the call.", is_error=True)
        try:
            result = calling.result()
        except BaseException as exc:  # noqa: BLE001 - cancelled by the dying connection, or a protocol error
            return ToolOutput.text(f"The MCP server {self.name!r} failed: {_cause(exc)}", is_error=True)
        blocks: list[dict[str, Any]] = []
        for item in result.content:
            if item.type == "text":
                blocks.append({"type": "text", "text": item.text})
            elif item.type == "image":
                source = {"type": "base64", "media_type": item.mime_type, "data": item.data}
                blocks.append({"type": "image", "source": source})
            else:
                blocks.append({"type": "text", "text": f"[{item.type} content from the MCP server]"})
        if not blocks and result.structured_content is not None:
            blocks.append({"type": "text", "text": repr(result.structured_content)})
        return ToolOutput(blocks, bool(result.is_error))

    async def close(self) -> None:
        self._closing.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10)


def _cause(exc: BaseException) -> str:
    """The innermost error of an exception group, as one line without headers or tokens."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
