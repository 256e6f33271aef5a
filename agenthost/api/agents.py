"""/v1/agents (layer 4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.pagination import created_bounds, limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.schemas.agents import AgentCreate, AgentUpdate, config_from_create, config_from_update
from agenthost.schemas.common import MAX_INT32

router = APIRouter(prefix="/v1/agents", tags=["agents"], route_class=CheckedRoute)


@router.post("")
async def create_agent(request: Request, body: AgentCreate, workspace_id: Workspace) -> JSONBytes:
    config = config_from_create(body)
    await store(request).skills.check_references(workspace_id, body.skills, "skills")
    return json_response(await store(request).agents.create(workspace_id, config))


@router.get("")
async def list_agents(
    request: Request,
    workspace_id: Workspace,
    created: Annotated[dict[str, int], Depends(created_bounds)],
    include_archived: bool = False,
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    result = await store(request).agents.list(
        workspace_id, page_request("agents", page, limit, "desc"), include_archived=include_archived, created=created
    )
    return json_response(page_body("agents", result, "desc"))


@router.get("/{agent_id}")
async def retrieve_agent(
    request: Request,
    agent_id: str,
    workspace_id: Workspace,
    version: Annotated[int | None, Query(ge=1, le=MAX_INT32)] = None,
) -> JSONBytes:
    return json_response(await store(request).agents.get(workspace_id, agent_id, version))


@router.post("/{agent_id}")
async def update_agent(request: Request, agent_id: str, body: AgentUpdate, workspace_id: Workspace) -> JSONBytes:
    await store(request).skills.check_references(workspace_id, body.skills or [], "skills")
    agent = await store(request).agents.update(
        workspace_id, agent_id, body.version, lambda current: config_from_update(current, body)
    )
    return json_response(agent)


@router.post("/{agent_id}/archive")
async def archive_agent(request: Request, agent_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).agents.archive(workspace_id, agent_id))


@router.get("/{agent_id}/versions")
async def list_agent_versions(
    request: Request, agent_id: str, workspace_id: Workspace, limit: int = limit_param(), page: str | None = None
) -> JSONBytes:
    result = await store(request).agents.versions(
        workspace_id, agent_id, page_request("agent_versions", page, limit, "desc", int)
    )
    return json_response(page_body("agent_versions", result, "desc"))
