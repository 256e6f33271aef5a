"""Where secrets must never appear, and a real MCP server to send them to (shared by the engine tests).

``Weather`` is an MCP server built with the official ``mcp`` SDK, behind a bearer check that
records every token it sees; it also plays an OAuth token endpoint for refreshes. The
``database_text`` / ``files_containing`` helpers read what the server stored and wrote.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from mcp.server.mcpserver import MCPServer

from agenthost.settings import Settings
from agenthost.store.sql import Store
from agenthost.store.tables import metadata
from tests.conftest import LiveServer, run_async


@dataclass
class Weather:
    """The test MCP server: which bearer tokens it accepts, and which it was sent."""

    url: str
    valid: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    refreshes: list[dict[str, str]] = field(default_factory=list)

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"


def weather_app(state: Weather) -> Any:
    server = MCPServer("weather")

    @server.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather in a city."""
        return f"sunny in {city}"

    @server.tool()
    def alerts(region: str) -> str:
        """Weather alerts for a region."""
        return f"no alerts in {region}"

    inner = server.streamable_http_app(stateless_http=True, json_response=True)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/token-denied":
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"error":"invalid_grant"}'})
            return
        if scope["type"] == "http" and scope["path"] == "/token":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            form = dict(pair.split("=", 1) for pair in body.decode().split("&"))
            state.refreshes.append(form)
            token = f"fresh-{secrets.token_hex(8)}"
            state.valid.add(token)
            answer = orjson.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600})
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        if scope["type"] == "http":
            token = dict(scope["headers"]).get(b"authorization", b"").decode().removeprefix("Bearer ")
            state.seen.append(token)
            if token not in state.valid:
                headers = [(b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await inner(scope, receive, send)

    return app


def database_text(server: LiveServer) -> str:
    """Every row of every table, as text."""

    async def read() -> str:
        store = Store(Settings(database_url=server.database_url).resolved_database_url())
        try:
            return await store.db.run_read(
                lambda c: repr([c.execute(sa.select(table)).all() for table in metadata.sorted_tables])
            )
        finally:
            await store.close()

    return run_async(read())


def files_containing(root: Path, *needles: bytes) -> list[str]:
    """The files under ``root`` that hold any of ``needles``."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(needle in data for needle in needles):
                found.append(str(path))
    return found
