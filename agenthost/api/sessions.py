"""/v1/sessions (layer 4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

import agenthost.engine.commands as commands
from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.idempotency import idempotent
from agenthost.api.pagination import created_bounds, decode_cursor, limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import InvalidRequest
from agenthost.schemas.agents import retool
from agenthost.schemas.common import JSON, MAX_INT32, patch_metadata
from agenthost.schemas.events import initial_event_payloads
from agenthost.schemas.resources import ResourceUpdate, parse_added
from agenthost.schemas.sessions import (
    AgentRef,
    AgentWithOverrides,
    SessionCreate,
    SessionUpdate,
    apply_overrides,
    snapshot,
)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=CheckedRoute)

Status = Literal["rescheduling", "running", "idle", "terminated"]


@router.post("")
async def create_session(request: Request, body: SessionCreate, workspace_id: Workspace) -> Response:
    return await idempotent(request, workspace_id, lambda: _create_session(request, body, workspace_id))


async def _create_session(request: Request, body: SessionCreate, workspace_id: str) -> JSONBytes:
    body.check_unsupported()
    resources = body.parsed_resources()
    initial = initial_event_payloads(body.initial_events)
    ref = body.agent
    agent_id = ref if isinstance(ref, str) else ref.id
    version = ref.version if isinstance(ref, AgentRef | AgentWithOverrides) else None
    if isinstance(ref, AgentWithOverrides):
        await store(request).skills.check_references(workspace_id, ref.skills or [], "agent.skills")

    def build_agent(agent: JSON) -> JSON:
        snap = snapshot(agent["id"], agent["version"], agent)
        return apply_overrides(snap, ref) if isinstance(ref, AgentWithOverrides) else snap

    session = await store(request).sessions.create(
        workspace_id,
        agent_id=agent_id,
        agent_version=version,
        build_agent=build_agent,
        environment_id=body.environment_id,
        title=body.title,
        metadata=body.metadata,
        initial_events=initial,
        resources=resources,
        vault_ids=body.vault_ids,
    )
    commands.wake_after_create(request.app.state.engine, session)
    return json_response(session)


@router.get("")
async def list_sessions(
    request: Request,
    workspace_id: Workspace,
    created: Annotated[dict[str, int], Depends(created_bounds)],
    agent_id: str | None = None,
    agent_version: Annotated[int | None, Query(ge=1, le=MAX_INT32)] = None,
    deployment_id: str | None = None,
    memory_store_id: str | None = None,
    statuses: Annotated[list[Status], Query(alias="statuses[]")] = [],  # noqa: B006 - FastAPI copies defaults
    include_archived: bool = False,
    order: Literal["asc", "desc"] = "desc",
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    if agent_version is not None and agent_id is None:
        raise InvalidRequest("agent_version: only allowed together with agent_id")
    result = await store(request).sessions.list(
        workspace_id,
        page_request("sessions", page, limit, order),
        agent_id=agent_id,
        agent_version=agent_version,
        deployment_id=deployment_id,
        memory_store_id=memory_store_id,
        statuses=list(statuses),
        include_archived=include_archived,
        created=created,
    )
    return json_response(page_body("sessions", result, order, bidirectional=True))


@router.get("/{session_id}")
async def retrieve_session(request: Request, session_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).sessions.get(workspace_id, session_id))


@router.post("/{session_id}")
async def update_session(request: Request, session_id: str, body: SessionUpdate, workspace_id: Workspace) -> JSONBytes:
    body.check_unsupported()

    def change(row: Any) -> JSON:
        changed: JSON = {}
        if body.given("title") and body.title != row.title:
            changed["title"] = body.title
        if body.metadata is not None:
            metadata = patch_metadata(row.metadata, body.metadata)
            if metadata != row.metadata:
                changed["metadata"] = metadata
        if body.agent is not None and (body.agent.given("tools") or body.agent.given("mcp_servers")):
            if row.status in ("running", "rescheduling"):
                raise InvalidRequest(f"agent: session {row.id} is {row.status}; change its tools when it is idle")
            tools = (body.agent.tools or []) if body.agent.given("tools") else None
            servers = (body.agent.mcp_servers or []) if body.agent.given("mcp_servers") else None
            try:
                new_tools, new_servers = retool(row.agent, tools, servers)
            except InvalidRequest as exc:
                raise InvalidRequest(f"agent.{exc.message}") from None
            agent = {**row.agent, "tools": new_tools, "mcp_servers": new_servers}
            if agent != row.agent:
                changed["agent"] = agent
        return changed

    return json_response(await store(request).sessions.update(workspace_id, session_id, change))


@router.post("/{session_id}/archive")
async def archive_session(request: Request, session_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).sessions.archive(workspace_id, session_id))


@router.delete("/{session_id}")
async def delete_session(request: Request, session_id: str, workspace_id: Workspace) -> JSONBytes:
    await commands.delete_session(store(request), request.app.state.engine, workspace_id, session_id)
    return json_response({"id": session_id, "type": "session_deleted"})


# -- resources -------------------------------------------------------------------------------------


@router.get("/{session_id}/resources")
async def list_resources(
    request: Request,
    session_id: str,
    workspace_id: Workspace,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    page: str | None = None,
) -> JSONBytes:
    listing = f"resources:{session_id}"
    after = None if page is None else decode_cursor(page, listing, str)[2]
    result = await store(request).resources.list(workspace_id, session_id, limit=limit, after=after)
    return json_response(page_body(listing, result, "asc"))


@router.post("/{session_id}/resources")
async def add_resource(request: Request, session_id: str, body: dict[str, Any], workspace_id: Workspace) -> JSONBytes:
    param = parse_added(body)
    return json_response(await store(request).resources.add(workspace_id, session_id, param))


@router.get("/{session_id}/resources/{resource_id}")
async def retrieve_resource(request: Request, session_id: str, resource_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).resources.get(workspace_id, session_id, resource_id))


@router.post("/{session_id}/resources/{resource_id}")
async def update_resource(
    request: Request, session_id: str, resource_id: str, body: ResourceUpdate, workspace_id: Workspace
) -> JSONBytes:
    return json_response(
        await store(request).resources.update(workspace_id, session_id, resource_id, body.authorization_token)
    )


@router.delete("/{session_id}/resources/{resource_id}")
async def delete_resource(request: Request, session_id: str, resource_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).resources.delete(workspace_id, session_id, resource_id)
    return json_response({"id": resource_id, "type": "session_resource_deleted"})
