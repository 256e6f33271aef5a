"""GET /health: 200 when the database answers (layer 4). Needs no key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from agenthost.api.deps import store
from agenthost.api.errors import error_response
from agenthost.api.responses import JSONBytes, json_response

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> JSONBytes:
    try:
        await store(request).db.ping()
    except (SQLAlchemyError, OSError) as exc:
        return error_response(request, 503, "api_error", f"database unreachable: {type(exc).__name__}")
    return json_response({"status": "ok"})
