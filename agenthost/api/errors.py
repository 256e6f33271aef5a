"""Exceptions to the Anthropic error envelope, in one place (layer 4).

Every non-2xx answer is ``{"type":"error","error":{"type","message"[,"details"]},"request_id"}``
with a ``request-id`` header. Deterministic failures carry ``x-should-retry: false`` so
the SDK does not send the same doomed request three times.
"""

from __future__ import annotations

import logging
import math
import re
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
    fields: dict[str, object] | None = None,
    retry_after: float | None = None,
) -> JSONBytes:
    rid = request_id(request)
    error: dict[str, Any] = {**(fields or {}), "type": wire_type, "message": message}
    if details:
        error["details"] = details
    headers = _headers(rid, status, should_retry, retry_after)
    return json_response({"type": "error", "error": error, "request_id": rid}, status, headers)


def _headers(rid: str, status: int, should_retry: bool | None, retry_after: float | None) -> dict[str, str]:
    headers = {"request-id": rid}
    if should_retry is not None:
        headers["x-should-retry"] = "true" if should_retry else "false"
    elif 400 <= status < 500 and status not in (408, 409, 429):
        headers["x-should-retry"] = "false"
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return headers


def error_headers(rid: str, status: int, exc: AgentHostError) -> dict[str, str]:
    """The headers of an error answer for ``exc``: request id, whether to retry, and when."""
    return _headers(rid, status, exc.should_retry, exc.retry_after)


def _loc(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "body"


def _real_path(loc: Sequence[int | str], body: Any, kind: str) -> list[int | str]:
    """Keep only the steps of a location that name input fields, dropping pydantic's union labels.

    Labels are tags of discriminated unions (``agent_toolset_20260401``) and member names of
    plain unions (``constrained-str``); a key absent from the input is kept only when it is the
    field reported missing.
    """
    path: list[int | str] = []
    node = body
    steps = list(loc)
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and last and kind == "missing":
            node = None
        elif isinstance(step, str):
            continue  # a union label, not a field
        else:
            node = None
        path.append(step)
    return path


def _located(error: Any, body: Any) -> list[int | str]:
    loc = list(error.get("loc", ()))
    if loc and loc[0] == "body":
        return _real_path(loc[1:], body, error.get("type", ""))
    if loc and loc[0] in ("query", "path", "header"):
        return loc[1:]
    return loc


def validation_message(errors: Sequence[Any], body: Any = None) -> str:
    """One line naming the offending field, e.g. ``tools[0].type: ...``.

    Unions report one error per member; the one reaching deepest into the input is the
    member the client meant, so that one is reported.
    """
    located = [(_located(error, body), error) for error in errors]
    loc, first = max(located, key=lambda pair: len(pair[0]))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return f"body: malformed JSON ({first.get('ctx', {}).get('error', 'invalid')})"
    if kind == "missing" and not loc:
        return "body: a JSON object is required"
    if kind == "extra_forbidden":
        return f"{_loc(loc)}: unknown field"
    return f"{_loc(loc)}: {first.get('msg', 'invalid value')}"


def _allowed_methods(request: Request) -> list[str]:
    """The methods the published contract serves at this request's path.

    Where a fixed path and a templated one both match (``.../work/poll`` and ``.../work/{work_id}``),
    the fixed one names the path.
    """
    matches: list[tuple[int, set[str]]] = []
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)), request.url.path):
            matches.append((template.count("{"), {method.upper() for method in operations}))
    fewest = min((params for params, _ in matches), default=0)
    return sorted(set().union(*(methods for params, methods in matches if params == fewest)))


async def handle(request: Request, exc: Exception) -> JSONBytes:
    """Turn any exception into the envelope: ours carry their status; anything else is a logged 500."""
    if isinstance(exc, AgentHostError):
        details = dict(exc.details or {})
        if exc.error_code:
            details["error_code"] = exc.error_code
        return error_response(
            request,
            exc.status,
            exc.wire_type,
            exc.message,
            details=details or None,
            should_retry=exc.should_retry,
            fields=exc.fields,
            retry_after=exc.retry_after,
        )
    if isinstance(exc, RequestValidationError):
        return error_response(request, 400, "invalid_request_error", validation_message(exc.errors(), exc.body))
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return error_response(request, 404, "not_found_error", f"no route for {request.method} {request.url.path}")
        if exc.status_code == 405:
            refused = error_response(request, 405, "invalid_request_error", f"method {request.method} not allowed here")
            # RFC 9110: name them; a route outside the published contract names its own.
            allowed = _allowed_methods(request) or [(exc.headers or {}).get("Allow", "")]
            refused.headers["allow"] = ", ".join(allowed)
            return refused
        if exc.status_code == 413:
            return error_response(request, 413, "request_too_large", str(exc.detail))
        if exc.status_code == 408:
            return error_response(request, 408, "timeout_error", str(exc.detail), should_retry=True)
        wire = "invalid_request_error" if exc.status_code < 500 else "api_error"
        return error_response(request, exc.status_code, wire, str(exc.detail))
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    # A bug that a retry cannot heal: do not make the SDK send the request three times.
    return error_response(request, 500, "api_error", "internal server error", should_retry=False)


def install(app: FastAPI) -> None:
    """Register ``handle`` for every exception (Starlette picks the most specific registration)."""
    for kind in (AgentHostError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
