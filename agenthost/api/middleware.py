"""Pure ASGI middleware (layer 4): request ids, authentication, input hygiene and the body size limit.

Everything here answers before the route reads the body: a request without a valid key
gets 401, a path or query with a NUL byte gets 400, and a declared body over the limit
gets 413, without a byte of the body being parsed.
"""

from __future__ import annotations

import asyncio
import re

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthost.api.auth import CALLER, WORKSPACE, Authenticator, check_environment_key
from agenthost.api.errors import REQUEST_ID, error_headers
from agenthost.errors import AgentHostError, InvalidRequest, PayloadTooLarge
from agenthost.ids import new_id
from agenthost.schemas.skills import MAX_SKILL_FILES

UPLOAD_PATHS = frozenset({"/v1/files"})
UPLOAD_FRAMING = 64 * 1024
SKILL_UPLOAD = re.compile(r"^/v1/skills(/[^/]+/versions)?$")
SKILL_FRAMING = MAX_SKILL_FILES * 1024  # each files[] part has its own headers


class RequestContext:
    """Give each request an id (``request-id`` header), authenticate ``/v1`` calls, refuse oversized bodies."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_upload_bytes: int | None = None,
        max_skill_bytes: int | None = None,
        body_timeout: float = 30.0,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        # A file upload may be as large as a file, plus the multipart framing around it; a skill
        # upload as large as its files together.
        self.max_upload_bytes = max(max_body_bytes, (max_upload_bytes or 0) + UPLOAD_FRAMING)
        self.max_skill_upload_bytes = max(max_body_bytes, (max_skill_bytes or 0) + SKILL_FRAMING)

    def _limit(self, method: str, path: str) -> int:
        if method == "POST" and path in UPLOAD_PATHS:
            return self.max_upload_bytes
        if method == "POST" and SKILL_UPLOAD.match(path):
            return self.max_skill_upload_bytes
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid: str = scope.setdefault(REQUEST_ID, new_id("req"))
        header = rid.encode()
        limit = self._limit(scope["method"], scope["path"])
        received = 0
        body_done = False

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name == b"request-id" for name, _ in headers):
                    headers.append((b"request-id", header))
                message["headers"] = headers
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive only waits for the client to leave (streams): no deadline
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                # An HTTPException passes through FastAPI's body parsing unchanged (see api/errors.py).
                raise HTTPException(
                    408, f"body: no part of the request body came for {self.body_timeout:g} s"
                ) from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"body: request body is over the limit of {limit} bytes")
            return message

        try:
            await self._check(scope, limit)
        except AgentHostError as exc:
            await _refuse(send, rid, exc)
            return
        await self.app(scope, receive_limited, send_with_id)

    async def _check(self, scope: Scope, limit: int) -> None:
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"body: request body is over the limit of {limit} bytes")
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if b"%00" in raw_path or b"%00" in scope.get("query_string", b"") or "\x00" in scope["path"]:
            raise InvalidRequest("path or query: NUL characters are not allowed")
        if scope["path"].startswith("/v1/"):
            authenticator: Authenticator = scope["app"].state.authenticator
            caller = await authenticator.authenticate(headers)
            scope[WORKSPACE], scope[CALLER] = caller.workspace_id, caller
            if caller.environment_id is not None:
                sessions = scope["app"].state.store.sessions
                await check_environment_key(caller, scope["method"], scope["path"], sessions.environment_of)


async def _refuse(send: Send, rid: str, exc: AgentHostError) -> None:
    """Answer with the error envelope before the app runs (its headers as ``api/errors.py`` makes them)."""
    error: dict[str, object] = {"type": exc.wire_type, "message": exc.message}
    body = orjson.dumps({"type": "error", "error": error, "request_id": rid})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.encode(), value.encode()) for name, value in error_headers(rid, exc.status, exc).items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
