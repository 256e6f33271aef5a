"""Exceptions to the Anthropic error envelope, in one place (layer 4; REFERENCE §1.4).

Every non-2xx answer is ``{"type":"error","error":{"type","message"[,"details"]},"request_id"}``
with a ``request-id`` header. Deterministic failures carry ``x-should-retry: false`` so
the SDK does not send the same doomed request three times.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import AgentHostError
from agenthost.ids import new_id

log = logging.getLogger("agenthost.api")

REQUEST_ID = "agenthost.request_id"


def request_id(request: Request) -> str:
    """The id of this request, made on first use and shared with the middleware."""
    rid = request.scope.get(REQUEST_ID)
    if rid is None:
        rid = request.scope[REQUEST_ID] = new_id("req")
    return rid


def error_response(
    request: Request,
    status: int,
    wire_type: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    should_retry: bool | None = None,
) -> JSONBytes:
    rid = request_id(request)
    error: dict[str, Any] = {"type": wire_type, "message": message}
    if details:
        error["details"] = details
    headers = {"request-id": rid}
    if should_retry is not None:
        headers["x-should-retry"] = "true" if should_retry else "false"
    elif 400 <= status < 500 and status not in (408, 409, 429):
        headers["x-should-retry"] = "false"
    return json_response({"type": "error", "error": error, "request_id": rid}, status, headers)


def _loc(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "body"


def _real_path(loc: Sequence[int | str], body: Any) -> list[int | str]:
    """Drop the union tags pydantic puts into a location: keep only steps that exist in the input."""
    path: list[int | str] = []
    node = body
    steps = list(loc)
    for index, step in enumerate(steps):
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        elif isinstance(node, dict) and index + 1 < len(steps) and steps[index + 1] in node:
            continue  # a discriminator tag: the next step is a key of this same object
        else:
            node = None
        path.append(step)
    return path


def validation_message(errors: Sequence[Any], body: Any = None) -> str:
    """One line naming the first offending field, e.g. ``tools[0].type: ...``."""
    first = errors[0]
    loc = list(first.get("loc", ()))
    if loc and loc[0] == "body":
        loc = _real_path(loc[1:], body)
    elif loc and loc[0] in ("query", "path", "header"):
        loc = loc[1:]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return f"body: malformed JSON ({first.get('ctx', {}).get('error', 'invalid')})"
    if kind == "missing" and not loc:
        return "body: a JSON object is required"
    if kind == "extra_forbidden":
        return f"{_loc(loc)}: unknown field"
    return f"{_loc(loc)}: {first.get('msg', 'invalid value')}"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the envelope."""

    async def on_agenthost_error(request: Request, exc: Exception) -> JSONBytes:
        assert isinstance(exc, AgentHostError)
        details = dict(exc.details or {})
        if exc.error_code:
            details["error_code"] = exc.error_code
        return error_response(
            request, exc.status, exc.wire_type, exc.message, details=details or None, should_retry=exc.should_retry
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONBytes:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, 400, "invalid_request_error", validation_message(exc.errors(), exc.body))

    async def on_http_error(request: Request, exc: Exception) -> JSONBytes:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(request, 404, "not_found_error", f"no route for {request.method} {request.url.path}")
        if exc.status_code == 405:
            return error_response(request, 405, "invalid_request_error", f"method {request.method} not allowed here")
        wire = "invalid_request_error" if exc.status_code < 500 else "api_error"
        return error_response(request, exc.status_code, wire, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONBytes:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request, 500, "api_error", "internal server error", should_retry=True)

    app.add_exception_handler(AgentHostError, on_agenthost_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
