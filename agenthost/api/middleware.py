"""Pure ASGI middleware (layer 4): request ids on every response and the body size limit."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthost.api.errors import REQUEST_ID
from agenthost.errors import PayloadTooLarge
from agenthost.ids import new_id


class RequestContext:
    """Give each request an id (``request-id`` header) and refuse bodies over ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = scope.setdefault(REQUEST_ID, new_id("req"))
        header = rid.encode()
        limit = self.max_body_bytes
        received = 0

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name == b"request-id" for name, _ in headers):
                    headers.append((b"request-id", header))
                message["headers"] = headers
            await send(message)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"body: request body is over the limit of {limit} bytes")
            return message

        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, rid, limit)
                return
        await self.app(scope, receive_limited, send_with_id)


async def _too_large(send: Send, rid: str, limit: int) -> None:
    """Answer 413 before reading a body whose declared length is over the limit."""
    body = orjson.dumps(
        {
            "type": "error",
            "error": {"type": "request_too_large", "message": f"body: request body is over the limit of {limit} bytes"},
            "request_id": rid,
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"request-id", rid.encode()),
        (b"x-should-retry", b"false"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
