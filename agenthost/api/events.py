"""/v1/sessions/{id}/events: the persisted event log (layer 4; REFERENCE §7.1)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from agenthost.api.deps import Workspace, store
from agenthost.api.pagination import created_bounds, limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import InvalidRequest
from agenthost.schemas.events import EVENT_TYPES

router = APIRouter(prefix="/v1/sessions/{session_id}/events", tags=["events"])


@router.get("")
async def list_events(
    request: Request,
    session_id: str,
    workspace_id: Workspace,
    created: Annotated[dict[str, int], Depends(created_bounds)],
    types: Annotated[list[str], Query(alias="types[]")] = [],  # noqa: B006 - FastAPI copies defaults
    order: Literal["asc", "desc"] = "asc",
    limit: int = limit_param(default=1000, maximum=1000),
    page: str | None = None,
) -> JSONBytes:
    for index, kind in enumerate(types):
        if kind not in EVENT_TYPES:
            raise InvalidRequest(f"types[{index}]: unknown event type {kind!r}")
    result = await store(request).sessions.events(
        workspace_id, session_id, page_request("events", page, limit, order, int), types=list(types), created=created
    )
    return json_response(page_body("events", result, order))
