"""/v1/sessions/{id}/events: list, send and stream (layer 4)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from agenthost.api.auth import CALLER
from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.event_stream import EventStream
from agenthost.api.idempotency import idempotent
from agenthost.api.pagination import created_bounds, limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.api.sse import frame
from agenthost.engine.commands import RECEIPT, send_events
from agenthost.errors import InvalidRequest, PermissionDenied
from agenthost.schemas.events import DELTA_TYPES, EVENT_TYPES, MAX_DELTA_TYPES, SendEvents, send_payloads
from agenthost.store.sql import Caller

router = APIRouter(prefix="/v1/sessions/{session_id}/events", tags=["events"], route_class=CheckedRoute)


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
        workspace_id, session_id, page_request("events", page, limit, order, list), types=list(types), created=created
    )
    return json_response(page_body("events", result, order))


@router.post("")
async def send(request: Request, session_id: str, body: SendEvents, workspace_id: Workspace) -> Response:
    caller: Caller = request.scope[CALLER]
    if caller.environment_id is not None:  # a worker answers calls; it does not speak for the user
        for index, event in enumerate(body.events):
            if event.type not in RECEIPT:
                raise PermissionDenied(
                    f"events[{index}].type: an environment key may only send {' or '.join(RECEIPT)}, not {event.type}"
                )

    async def work() -> JSONBytes:
        payloads = send_payloads(body.events)
        echoed = await send_events(store(request), request.app.state.engine, workspace_id, session_id, payloads)
        return json_response({"data": echoed})

    return await idempotent(request, workspace_id, work)


@router.get("/stream")
async def stream(
    request: Request,
    session_id: str,
    workspace_id: Workspace,
    event_deltas: Annotated[list[str], Query(alias="event_deltas[]")] = [],  # noqa: B006
    last_event_id: Annotated[str | None, Header(alias="last-event-id")] = None,
) -> EventStream:
    if len(event_deltas) > MAX_DELTA_TYPES:
        raise InvalidRequest(f"event_deltas[]: at most {MAX_DELTA_TYPES} values are allowed")
    for index, kind in enumerate(event_deltas):
        if kind not in DELTA_TYPES:
            raise InvalidRequest(
                f"event_deltas[{index}]: must be one of {', '.join(sorted(DELTA_TYPES))}, not {kind!r}"
            )
    sessions = store(request).sessions
    await sessions.get(workspace_id, session_id)  # 404 as JSON before the stream starts
    caller: Caller = request.scope[CALLER]
    release = request.app.state.stream_limits.take(caller.key_id)  # 429 past the key's streams
    subscription = None
    try:
        subscription = await store(request).bus.subscribe(session_id)
        start, backlog = (
            await sessions.events_after(workspace_id, session_id, last_event_id) if last_event_id else (0, [])
        )
    except BaseException:
        if subscription is not None:
            subscription.close()
        release()
        raise
    # Showings up to this number were seen (the client's last event) or replayed from the log: the feed,
    # which may still be catching up on this replica, must not send them again.
    replayed = max(start, backlog[-1][0] if backlog else 0)
    framed = b"".join(frame(event) for _, event in backlog)
    ping = request.app.state.settings.ping_seconds
    return EventStream(subscription, framed, replayed, ping, on_end=release, previews=frozenset(event_deltas))
