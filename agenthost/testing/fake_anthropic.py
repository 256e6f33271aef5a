"""A scripted fake of the Anthropic Messages API, served over real HTTP (layer 5).

Point ``ANTHROPIC_BASE_URL`` at it and the real provider code path runs against it.
Replies are scripted per *key*: the first line of the request's system prompt, so each
test gives its agent a system prompt of its own and scripts what the "model" answers,
call by call. Every request is recorded. A request with no scripted reply left gets a
500 and is recorded in ``unexpected`` so the test can fail on it.

    fake = FakeAnthropic().start()
    fake.script("weather-test", ToolUse("bash", {"command": "date"}), Text("It is late."))
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Text:
    """A message with one text block."""

    text: str
    stop_reason: str = "end_turn"


@dataclass
class ToolUse:
    """A message with an optional text block, then one or more tool_use blocks."""

    name: str
    input: dict[str, Any]
    text: str | None = None
    more: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Thinking:
    """A message with a thinking block, then text."""

    text: str


@dataclass
class Pieces:
    """A message whose text streams in ``pieces``, after a thinking block when ``thinking``.

    With ``release`` given, the stream stops after the first piece until it is set, so a test can
    watch the answer while it is being written (``after_first`` is set once that piece went out).
    With ``fail_after_first``, the stream ends after the first piece with an ``error`` event of
    that type, as the API's stream does when it fails midway.
    """

    pieces: list[str]
    thinking: bool = False
    release: threading.Event | None = None
    after_first: threading.Event = field(default_factory=threading.Event)
    fail_after_first: str | None = None


@dataclass
class Error:
    """An HTTP error answer (e.g. 529 overloaded_error, 429 rate_limit_error, 500 api_error, 401)."""

    status: int
    type: str = "api_error"
    message: str = "scripted failure"


@dataclass
class Hold:
    """Start streaming, then wait until ``release`` is set before sending ``then`` (for interrupts)."""

    then: Text | ToolUse
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)


Reply = Text | ToolUse | Thinking | Pieces | Error | Hold
USAGE = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}


def _key(body: dict[str, Any]) -> str:
    system = body.get("system") or ""
    if isinstance(system, list):
        system = system[0].get("text", "") if system else ""
    return str(system).split("\n", 1)[0]


def _blocks(reply: Text | ToolUse | Thinking | Pieces) -> tuple[list[dict[str, Any]], str]:
    if isinstance(reply, Text):
        return [{"type": "text", "text": reply.text}], reply.stop_reason
    if isinstance(reply, Pieces):
        text = {"type": "text", "text": "".join(reply.pieces)}
        thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
        return ([thinking, text] if reply.thinking else [text]), "end_turn"
    if isinstance(reply, Thinking):
        return [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "text", "text": reply.text}], (
            "end_turn"
        )
    blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    for name, tool_input in [(reply.name, reply.input), *reply.more]:
        blocks.append({"type": "tool_use", "id": f"toolu_{secrets.token_hex(8)}", "name": name, "input": tool_input})
    return blocks, "tool_use"


def _message(model: str, blocks: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "id": f"msg_{secrets.token_hex(8)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": USAGE,
    }


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _stream(model: str, reply: Text | ToolUse | Thinking | Pieces | Hold) -> AsyncIterator[bytes]:
    final = reply.then if isinstance(reply, Hold) else reply
    blocks, stop_reason = _blocks(final)
    start = _message(model, [], "")
    start["stop_reason"] = None
    yield _sse("message_start", {"type": "message_start", "message": start})
    if isinstance(reply, Hold):
        reply.started.set()
        while not reply.release.is_set():
            await asyncio.sleep(0.01)
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
            pieces = reply.pieces if isinstance(reply, Pieces) else [block["text"]]
            for number, piece in enumerate(pieces):
                delta = {"type": "text_delta", "text": piece}
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                if number == 0 and isinstance(reply, Pieces):
                    reply.after_first.set()
                    while reply.release is not None and not reply.release.is_set():
                        await asyncio.sleep(0.01)
                    if reply.fail_after_first is not None:
                        error = {"type": reply.fail_after_first, "message": "scripted failure midway"}
                        yield _sse("error", {"type": "error", "error": error})
                        return
        elif block["type"] == "thinking":
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            )
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                },
            )
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block["signature"]},
                },
            )
        else:
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
            )
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()},
                },
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": USAGE["output_tokens"]},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


class FakeAnthropic:
    """The fake server: script replies with :meth:`script`, read what was asked in :attr:`requests`."""

    def __init__(self) -> None:
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.unexpected: list[dict[str, Any]] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.pages: dict[str, tuple[str, str | bytes]] = {}
        """Documents served at ``GET /pages/<name>`` (name may contain slashes) as (content type, body)."""
        self.page_hits: list[str] = []
        """Names of the pages requested, in order, found or not."""
        self.page_queries: list[tuple[str, dict[str, str]]] = []
        """The same requests with their query parameters."""

    def script(self, key: str, *replies: Reply) -> None:
        """Queue replies for requests whose system prompt starts with the line ``key``."""
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(replies)

    def remaining(self, key: str) -> int:
        with self._lock:
            return len(self._scripts.get(key, ()))

    def requests_for(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if _key(r) == key]

    async def _messages(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        key = _key(body)
        with self._lock:
            self.requests.append(body)
            queue = self._scripts.get(key)
            reply = queue.popleft() if queue else None
            if reply is None:
                self.unexpected.append(body)
        if reply is None:
            return JSONResponse(
                {
                    "type": "error",
                    "error": {"type": "api_error", "message": f"fake: no scripted reply left for {key!r}"},
                },
                status_code=500,
                headers={"x-should-retry": "false"},
            )
        if isinstance(reply, Error):
            return JSONResponse(
                {"type": "error", "error": {"type": reply.type, "message": reply.message}}, status_code=reply.status
            )
        model = body.get("model", "claude")
        if body.get("stream"):
            return StreamingResponse(_stream(model, reply), media_type="text/event-stream")
        final = reply.then if isinstance(reply, Hold) else reply
        blocks, stop_reason = _blocks(final)
        return JSONResponse(_message(model, blocks, stop_reason))

    async def _page(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.page_hits.append(name)
        self.page_queries.append((name, dict(request.query_params)))
        if name == "moved":
            return Response(status_code=302, headers={"location": "/pages/doc"})
        if name not in self.pages:
            return Response("no such page", status_code=404, media_type="text/plain")
        content_type, body = self.pages[name]
        return Response(body, media_type=content_type)

    def start(self) -> FakeAnthropic:
        app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/pages/{name:path}", self._page, methods=["GET"]),
            ]
        )
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets made with it, and without
        # NODELAY every keep-alive answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="asyncio", http="httptools")
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake Anthropic server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
