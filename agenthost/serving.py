"""How ``agenthost serve`` runs uvicorn (layer 5): connection limits and a deadline for request headers.

uvicorn times out an idle keep-alive connection, but not one that is still sending its request
line and headers: a client sending a byte a second holds its connection (and a file descriptor)
for as long as it likes, with no key needed. The protocols here close a connection whose next
request's headers have not all arrived ``header_timeout_seconds`` after it opened or after its
previous response. A request body that stalls is the app's business (``api/middleware.py``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agenthost.settings import Settings


class _HeaderDeadline:
    """Mixed into a uvicorn HTTP protocol: close the connection when a request's headers take too long."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    # Attributes of the uvicorn protocol this is mixed into.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _await_headers(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        self._header_timer = None
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests and not self.transport.is_closing():
            self.transport.close()


def listen(settings: Settings) -> socket.socket:
    """The server's socket, bound before anything else starts; SystemExit naming the fix when the port is taken."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"agenthost: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; stop what holds "
            "it or choose another port (--port or AGENTHOST_PORT) or interface (--host or AGENTHOST_HOST)"
        ) from None
    sock.set_inheritable(True)
    return sock


def protocol(kind: Literal["httptools", "h11"], header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol of that kind, with the header deadline."""
    base: type[Any] = HttpToolsProtocol if kind == "httptools" else H11Protocol
    return type(f"Deadline{base.__name__}", (_HeaderDeadline, base), {"header_timeout": header_timeout})


def config(
    app: Any,
    settings: Settings,
    *,
    http: Literal["httptools", "h11"] = "httptools",
    loop: Literal["uvloop", "asyncio"] = "uvloop",
    **options: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of ``agenthost serve``; the test servers change a few ``options``."""
    chosen: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "loop": loop,
        "http": protocol(http, settings.header_timeout_seconds),
        "access_log": False,
        "timeout_keep_alive": settings.keep_alive_seconds,  # uvicorn's annotation says int; any number works
        "limit_concurrency": settings.max_connections,
        # Event streams never end by themselves: give them a few seconds, then close them on shutdown.
        "timeout_graceful_shutdown": 5,
    }
    return uvicorn.Config(app, **(chosen | options))
