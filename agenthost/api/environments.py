"""/v1/environments (layer 4)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.pagination import limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.schemas.environments import (
    EnvironmentCreate,
    EnvironmentUpdate,
    config_from_create,
    config_from_update,
)

router = APIRouter(prefix="/v1/environments", tags=["environments"], route_class=CheckedRoute)


@router.post("")
async def create_environment(request: Request, body: EnvironmentCreate, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).environments.create(workspace_id, config_from_create(body)))


@router.get("")
async def list_environments(
    request: Request,
    workspace_id: Workspace,
    include_archived: bool = False,
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    result = await store(request).environments.list(
        workspace_id, page_request("environments", page, limit, "desc"), include_archived=include_archived
    )
    return json_response(page_body("environments", result, "desc"))


@router.get("/{environment_id}")
async def retrieve_environment(request: Request, environment_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).environments.get(workspace_id, environment_id))


@router.post("/{environment_id}")
async def update_environment(
    request: Request, environment_id: str, body: EnvironmentUpdate, workspace_id: Workspace
) -> JSONBytes:
    env = await store(request).environments.update(
        workspace_id, environment_id, lambda current: config_from_update(current, body)
    )
    return json_response(env)


@router.post("/{environment_id}/archive")
async def archive_environment(request: Request, environment_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).environments.archive(workspace_id, environment_id))


@router.delete("/{environment_id}")
async def delete_environment(request: Request, environment_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).environments.delete(workspace_id, environment_id)
    return json_response({"id": environment_id, "type": "environment_deleted"})
