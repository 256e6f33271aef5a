"""``GET /metrics`` and the count of every HTTP request (layer 4).

Served only when ``AGENTHOST_METRICS`` is on. With ``AGENTHOST_METRICS_TOKEN`` set, a scrape
must send it as a bearer token; the route never takes an API key, so a scraper needs no
tenant's credentials and an API key grants no view of the whole server.
"""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthost.errors import AuthenticationFailed
from agenthost.metrics import Metrics

router = APIRouter(tags=["metrics"], include_in_schema=False)
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other a client sends is counted as OTHER (labels stay bounded)."""


@router.get("/metrics")
async def scrape(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise AuthenticationFailed("GET /metrics needs the metrics token (Authorization: Bearer ...)")
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=EXPOSITION)


class CountRequests:
    """Count each request by method, route template and status, and time it to the end of its answer."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.monotonic()
        status = 500  # what the server answers for an app that fails before it starts its answer

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            self.metrics.request(method, template, status, time.monotonic() - began)
