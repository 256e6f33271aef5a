"""The per-sandbox egress proxy: the only way out of a sandbox (layer 1; issue #4 point 5).

A sandbox has its own network namespace with nothing but loopback. The server opens a
listening socket *inside* that namespace (``setns`` in a throwaway thread; the socket
stays there while the server's own connections use the host's network) and serves HTTP
proxying on it: ``CONNECT host:port`` tunnels (HTTPS, no interception) and absolute-URI
plain HTTP. The sandbox's ``HTTP(S)_PROXY`` variables point at it, so pip, npm, curl,
git and most HTTP clients work; anything that ignores the variables has no route at all.

Every request is checked twice: the host against the environment's policy before any
DNS lookup, then every resolved address against the non-public rule, and the proxy
connects to the address it checked. Refusals are a 403 whose body says why.

A host that one of the session's ``environment_variable`` credentials may reach is treated
differently: the proxy reads the request (ending the sandbox's TLS with
:class:`~agenthost.sandbox.interception.Interceptor` for ``CONNECT``), puts each secret in
place of its placeholder in the enabled locations (headers, body), and sends it on with
``Connection: close``. One request per connection: the client opens the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agenthost.sandbox.addresses import AddressRefused, public_addresses
from agenthost.sandbox.base import NetworkPolicy, SecretInjection

if TYPE_CHECKING:  # cryptography's x509 is imported only by a server that intercepts
    from agenthost.sandbox.interception import Interceptor

PORT = 3128
MAX_CONNECTIONS = 128  # per sandbox: past it new connections are closed at once
_CLONE_NEWNET = 0x40000000
_HEAD_LIMIT = 64 * 1024
_BODY_LIMIT = 16 << 20  # a request body larger than this is passed on as it is, placeholders and all
log = logging.getLogger("agenthost.sandbox.egress")


class EgressProxy:
    """Serves one sandbox's proxy socket with that sandbox's policy."""

    def __init__(
        self,
        policy: NetworkPolicy,
        trusted: Mapping[str, str],
        session_id: str,
        registries: tuple[str, ...],
        secrets: tuple[SecretInjection, ...] = (),
        interceptor: Interceptor | None = None,
    ):
        self.policy = policy
        self.registries = registries
        self.trusted = trusted
        self.session_id = session_id
        self.secrets = secrets
        self.interceptor = interceptor
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, sock: socket.socket) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, sock=sock, limit=_HEAD_LIMIT)
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._proxy(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        request_line, *headers = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            port, path = int(port_text), ""
        elif target.startswith("http://"):
            parts = urlsplit(target)
            host, port = parts.hostname or "", parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        else:
            await _reply(writer, 400, "The sandbox proxy takes CONNECT or absolute http:// requests only.")
            return
        host = host.strip("[]").lower().rstrip(".")
        if not self.policy.allows(host, self.registries):
            log.info("egress %s: %s %s:%d refused by policy", self.session_id, method, host, port)
            await _reply(writer, 403, f"Blocked by the sandbox network policy: {host} is not an allowed host.")
            return
        try:
            addresses = [self.trusted[host]] if host in self.trusted else await public_addresses(host, port)
        except AddressRefused as exc:
            log.info("egress %s: %s %s:%d refused: %s", self.session_id, method, host, port, exc)
            await _reply(writer, 403, f"Blocked by the sandbox network policy: {exc}.")
            return
        injected = [secret for secret in self.secrets if secret.applies(host)]
        if injected and (method != "CONNECT" or self.interceptor is not None):
            await self._inject(reader, writer, method, host, port, path, version, headers, addresses[0], injected)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(addresses[0], port), 15)
        except (OSError, TimeoutError) as exc:
            await _reply(writer, 502, f"The sandbox proxy could not connect to {host}:{port}: {exc}")
            return
        log.debug("egress %s: %s %s:%d via %s", self.session_id, method, host, port, addresses[0])
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            kept = [h for h in headers if h and not h.lower().startswith(("proxy-", "connection:", "keep-alive:"))]
            upstream_writer.write(
                f"{method} {path} {version}\r\n{''.join(h + chr(13) + chr(10) for h in kept)}"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()

    async def _inject(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        host: str,
        port: int,
        path: str,
        version: str,
        headers: list[str],
        address: str,
        secrets: list[SecretInjection],
    ) -> None:
        """Forward one request with the secrets in place of their placeholders (see the module's docstring)."""
        tls: ssl.SSLContext | None = None
        if method == "CONNECT":
            assert self.interceptor is not None
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await writer.start_tls(self.interceptor.server_context(host))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            request_line, *headers = head.decode("latin-1").split("\r\n")
            method, path, version = request_line.split(" ", 2)
            tls = self.interceptor.upstream_context()
            if not path.startswith("/"):  # an absolute target could name another host behind the same address
                await _reply(writer, 400, "The sandbox proxy takes origin-form requests (GET /path) in a tunnel.")
                return
        # The Host header is the checked host, whatever the client wrote: a front end shared by several sites
        # routes by it, and the secret must reach only the credential's host.
        dropped = ("proxy-", "connection:", "keep-alive:", "host:")
        fields = [h for h in headers if h and not h.lower().startswith(dropped)]
        default_port = 443 if tls is not None else 80
        fields.insert(0, f"Host: {host}" if port == default_port else f"Host: {host}:{port}")
        length = next((int(h.split(":", 1)[1]) for h in fields if h.lower().startswith("content-length:")), None)
        chunked = any(h.lower().startswith("transfer-encoding:") and "chunked" in h.lower() for h in fields)
        body = b""
        if length is not None and length <= _BODY_LIMIT and any(s.body for s in secrets):
            body = await reader.readexactly(length)
            for secret in secrets:
                if secret.body:
                    body = body.replace(secret.placeholder.encode(), secret.value.encode())
            fields = [h for h in fields if not h.lower().startswith("content-length:")]
            fields.append(f"Content-Length: {len(body)}")
        for secret in secrets:
            if secret.header:
                fields = [_swap_header(h, secret) for h in fields]
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, ssl=tls, server_hostname=host if tls else None), 15
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            await _reply(writer, 502, f"The sandbox proxy could not connect to {host}:{port}: {exc}")
            return
        log.debug("egress %s: %s %s:%d with credentials, via %s", self.session_id, method, host, port, address)
        upstream_writer.write(
            f"{method} {path} {version}\r\n{''.join(h + chr(13) + chr(10) for h in fields)}"
            "Connection: close\r\n\r\n".encode("latin-1")
            + body
        )
        try:
            if length is not None and not body and length:  # a body left as it was: stream it
                await asyncio.gather(_copy(reader, upstream_writer, length), _pipe(upstream_reader, writer))
            elif chunked:
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            else:
                await _pipe(upstream_reader, writer)
        finally:
            upstream_writer.close()


def _swap_header(line: str, secret: SecretInjection) -> str:
    name, colon, value = line.partition(":")
    if not colon or secret.placeholder not in value:
        return line
    value = value.replace(secret.placeholder, secret.value)
    if "\r" in value or "\n" in value:  # a secret must not start a header of its own
        return line
    return f"{name}:{value}"


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter, length: int) -> None:
    while length > 0:
        data = await source.read(min(length, 65536))
        if not data:
            return
        length -= len(data)
        sink.write(data)
        await sink.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()


async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def listen_in_namespace(pid: int, port: int = PORT) -> socket.socket:
    """A listening TCP socket inside the network namespace of process ``pid``.

    ``setns`` changes the calling thread only, so it runs in a thread of its own that
    ends afterwards, whatever happens. It needs CAP_SYS_ADMIN (a root server).
    """
    future: asyncio.Future[socket.socket] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def work() -> None:
        try:
            result: socket.socket | BaseException = _listen(pid, port)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            result = exc
        loop.call_soon_threadsafe(_settle, future, result)

    threading.Thread(target=work, name=f"netns-{pid}", daemon=True).start()
    try:
        return await future
    except asyncio.CancelledError:  # cancelled just after the socket arrived: nobody else will close it
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result().close()
        raise


def _settle(future: asyncio.Future[socket.socket], result: socket.socket | BaseException) -> None:
    if future.cancelled():
        if isinstance(result, socket.socket):
            result.close()
    elif isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _listen(pid: int, port: int) -> socket.socket:
    libc = ctypes.CDLL(None, use_errno=True)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into the sandbox's network namespace: {os.strerror(code)}")
        # Only loopback exists in there; the wildcard address avoids racing bwrap bringing it up.
        return socket.create_server(("0.0.0.0", port), backlog=128)
    finally:
        os.close(target)
        # This thread now lives in the sandbox's namespace; it ends here and is never reused.
