"""The ``Idempotency-Key`` header on creating sessions and sending events (layer 4; issue #5 point 5).

A client that retries after a timeout or a dropped connection sends the same key again
and gets the first request's answer (with ``idempotent-replayed: true``) instead of a
second session or a second copy of its events. The key belongs to the workspace; reusing
it for a different request is a 400, and a retry that arrives while the first request is
still being worked on is a 409 the client may retry. Answers are kept for 24 hours; only
successful answers are kept (a refused request changed nothing, so it may simply run again).
The answer is stored after the work's own transaction: a server that dies between the two
leaves a claim that frees itself after a minute, and a retry then does the work again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.responses import Response

from agenthost.api.deps import store
from agenthost.errors import AgentHostError, InDoubt, InvalidRequest

HEADER = "idempotency-key"
MAX_KEY = 255


class RequestInProgress(AgentHostError):
    status = 409
    wire_type = "invalid_request_error"
    should_retry = True


async def idempotent(request: Request, workspace_id: str, work: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``work`` once per Idempotency-Key (or every time, when the request has none)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await work()
    if not 0 < len(key) <= MAX_KEY or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key: must be 1 to {MAX_KEY} printable characters")
    body = await request.body()
    fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + body).hexdigest()
    keys = store(request).idempotency
    claim = await keys.claim(workspace_id, key, fingerprint)
    if claim.state == "mismatch":
        raise InvalidRequest("Idempotency-Key: this key was already used for a different request")
    if claim.state == "in_progress":
        raise RequestInProgress("Idempotency-Key: a request with this key is still being processed; retry it")
    if claim.state == "replay":
        assert claim.status is not None and claim.body is not None
        return Response(
            claim.body, claim.status, media_type="application/json", headers={"idempotent-replayed": "true"}
        )
    try:
        response = await work()
    except InDoubt:  # the work may have committed: the claim stays and goes stale, as when cancelled
        raise
    except Exception:  # refused (4xx): nothing was done, so the key is free again
        await keys.release(workspace_id, key, claim.token)
        raise
    # Cancelled (client gone, shutdown): the work may have committed, so the claim stays and goes stale.
    await keys.complete(workspace_id, key, claim.token, response.status_code, bytes(response.body).decode())
    return response
