"""/v1/environments/{id}/work: the self-hosted worker protocol (layer 4).

Workers poll with their environment key (``agenthost keys create --environment``); an API
key of the workspace may use every call too. Only ``self_hosted`` environments have work.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import Field

from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.pagination import limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import InvalidRequest
from agenthost.schemas.common import Body

router = APIRouter(prefix="/v1/environments/{environment_id}/work", tags=["work"], route_class=CheckedRoute)
POLL_INTERVAL_SECONDS = 0.1  # how often a held poll looks at the queue again


class StopBody(Body):
    force: bool | None = None


class UpdateBody(Body):
    metadata: dict[str, Annotated[str, Field(max_length=512)] | None]


async def _self_hosted(request: Request, workspace_id: str, environment_id: str) -> None:
    environment = await store(request).environments.get(workspace_id, environment_id)
    if environment["config"]["type"] != "self_hosted":
        raise InvalidRequest(f"environment_id: {environment_id} is not a self_hosted environment; it has no work")


@router.get("/poll")
async def poll(
    request: Request,
    environment_id: str,
    workspace_id: Workspace,
    block_ms: Annotated[int | None, Query(ge=1, le=999)] = None,
    reclaim_older_than_ms: Annotated[int, Query(ge=0)] = 5000,
    worker_id: Annotated[str | None, Header(alias="anthropic-worker-id", max_length=256)] = None,
) -> JSONBytes:
    """The next work item, or JSON ``null`` when there is none (after holding up to ``block_ms``)."""
    await _self_hosted(request, workspace_id, environment_id)
    work = store(request).work
    deadline = asyncio.get_running_loop().time() + (block_ms or 0) / 1000
    item = await work.poll(workspace_id, environment_id, worker_id, reclaim_older_than_ms)
    while item is None and (left := deadline - asyncio.get_running_loop().time()) > 0:
        await asyncio.sleep(min(POLL_INTERVAL_SECONDS, left))
        # Held: look (a read) before taking (a write), so a waiting worker costs the writer nothing.
        if await work.any_available(workspace_id, environment_id, reclaim_older_than_ms):
            item = await work.poll(workspace_id, environment_id, worker_id, reclaim_older_than_ms)
    return json_response(item)


@router.get("/stats")
async def stats(request: Request, environment_id: str, workspace_id: Workspace) -> JSONBytes:
    await _self_hosted(request, workspace_id, environment_id)
    return json_response(await store(request).work.stats(workspace_id, environment_id))


@router.get("")
async def list_work(
    request: Request,
    environment_id: str,
    workspace_id: Workspace,
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    await _self_hosted(request, workspace_id, environment_id)
    result = await store(request).work.list(workspace_id, environment_id, page_request("work", page, limit, "desc"))
    return json_response(page_body("work", result, "desc"))


@router.get("/{work_id}")
async def retrieve(request: Request, environment_id: str, work_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).work.get(workspace_id, environment_id, work_id))


@router.post("/{work_id}")
async def update(
    request: Request, environment_id: str, work_id: str, body: UpdateBody, workspace_id: Workspace
) -> JSONBytes:
    return json_response(
        await store(request).work.update_metadata(workspace_id, environment_id, work_id, body.metadata)
    )


@router.post("/{work_id}/ack")
async def ack(request: Request, environment_id: str, work_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).work.ack(workspace_id, environment_id, work_id))


@router.post("/{work_id}/heartbeat")
async def heartbeat(
    request: Request,
    environment_id: str,
    work_id: str,
    workspace_id: Workspace,
    desired_ttl_seconds: Annotated[int | None, Query(ge=1)] = None,
    expected_last_heartbeat: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONBytes:
    beat = await store(request).work.heartbeat(
        workspace_id, environment_id, work_id, desired_ttl_seconds, expected_last_heartbeat
    )
    return json_response(beat)


@router.post("/{work_id}/stop")
async def stop(
    request: Request, environment_id: str, work_id: str, workspace_id: Workspace, body: StopBody | None = None
) -> JSONBytes:
    force = bool(body and body.force)
    return json_response(await store(request).work.stop(workspace_id, environment_id, work_id, force))
