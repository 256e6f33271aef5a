"""GET /health: 200 when the database answers, 503 otherwise (layer 4). Needs no key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import store
from agenthost.api.responses import JSONBytes, json_response

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/health")
async def health(request: Request) -> JSONBytes:
    await store(request).db.ping()
    return json_response({"status": "ok"})
