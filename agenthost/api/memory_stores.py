"""/v1/memory_stores: stores, their memories and memory versions (layer 4).

Every change made through the API is recorded as the work of an ``api_actor`` naming the
caller's key id (``apikey_static`` for the key configured by ``AGENTHOST_API_KEY``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from agenthost.api.auth import CALLER
from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.pagination import created_bounds, limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import InvalidRequest
from agenthost.schemas.memory import (
    FULL_VIEW_PAGE,
    Actor,
    MemoryCreate,
    MemoryStoreCreate,
    MemoryStoreUpdate,
    MemoryUpdate,
    Operation,
    View,
    check_path_prefix,
    check_sha256,
    store_fields_from_create,
    store_fields_from_update,
)
from agenthost.store.sql import Caller, VersionFilters


class MemoryRoute(CheckedRoute):
    """A memory's ``content`` is stored as UTF-8 bytes: NUL is allowed there (lone surrogates are not)."""

    nul_fields = frozenset({"content"})


router = APIRouter(prefix="/v1/memory_stores", tags=["memory_stores"], route_class=MemoryRoute)
Created = Annotated[dict[str, int], Depends(created_bounds)]


def _actor(request: Request) -> Actor:
    caller: Caller = request.scope[CALLER]
    return Actor.api(caller.key_id)


def _page_size(limit: int, view: View) -> int:
    return min(limit, FULL_VIEW_PAGE) if view == "full" else limit


# -- stores ----------------------------------------------------------------------------------------


@router.post("")
async def create_memory_store(request: Request, body: MemoryStoreCreate, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).memory_stores.create(workspace_id, store_fields_from_create(body)))


@router.get("")
async def list_memory_stores(
    request: Request,
    workspace_id: Workspace,
    created: Created,
    include_archived: bool = False,
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    result = await store(request).memory_stores.list(
        workspace_id,
        page_request("memory_stores", page, limit, "desc"),
        include_archived=include_archived,
        created=created,
    )
    return json_response(page_body("memory_stores", result, "desc"))


@router.get("/{memory_store_id}")
async def retrieve_memory_store(request: Request, memory_store_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).memory_stores.get(workspace_id, memory_store_id))


@router.post("/{memory_store_id}")
async def update_memory_store(
    request: Request, memory_store_id: str, body: MemoryStoreUpdate, workspace_id: Workspace
) -> JSONBytes:
    updated = await store(request).memory_stores.update(
        workspace_id, memory_store_id, lambda current: store_fields_from_update(current, body)
    )
    return json_response(updated)


@router.post("/{memory_store_id}/archive")
async def archive_memory_store(request: Request, memory_store_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).memory_stores.archive(workspace_id, memory_store_id))


@router.delete("/{memory_store_id}")
async def delete_memory_store(request: Request, memory_store_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).memory_stores.delete(workspace_id, memory_store_id)
    return json_response({"id": memory_store_id, "type": "memory_store_deleted"})


# -- memories --------------------------------------------------------------------------------------


@router.post("/{memory_store_id}/memories")
async def create_memory(
    request: Request, memory_store_id: str, body: MemoryCreate, workspace_id: Workspace, view: View = "basic"
) -> JSONBytes:
    memory = await store(request).memory_stores.create_memory(
        workspace_id, memory_store_id, body.path, body.content, _actor(request), full=view == "full"
    )
    return json_response(memory)


@router.get("/{memory_store_id}/memories")
async def list_memories(
    request: Request,
    memory_store_id: str,
    workspace_id: Workspace,
    path_prefix: str = "/",
    depth: int = 0,
    view: View = "basic",
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    check_path_prefix(path_prefix)
    if depth not in (0, 1):
        raise InvalidRequest("depth: must be 0 (every memory below path_prefix) or 1 (its direct children)")
    listing = f"memories:{memory_store_id}"
    request_page = page_request(listing, page, _page_size(limit, view), "asc")
    if request_page.before is not None:
        raise InvalidRequest("page: not a cursor issued by this server")
    result = await store(request).memory_stores.list_memories(
        workspace_id, memory_store_id, request_page, prefix=path_prefix, depth=depth, full=view == "full"
    )
    return json_response(page_body(listing, result, "asc"))


@router.get("/{memory_store_id}/memories/{memory_id}")
async def retrieve_memory(
    request: Request, memory_store_id: str, memory_id: str, workspace_id: Workspace, view: View = "full"
) -> JSONBytes:
    memory = await store(request).memory_stores.get_memory(
        workspace_id, memory_store_id, memory_id, full=view == "full"
    )
    return json_response(memory)


@router.post("/{memory_store_id}/memories/{memory_id}")
async def update_memory(
    request: Request,
    memory_store_id: str,
    memory_id: str,
    body: MemoryUpdate,
    workspace_id: Workspace,
    view: View = "basic",
) -> JSONBytes:
    memory = await store(request).memory_stores.update_memory(
        workspace_id,
        memory_store_id,
        memory_id,
        _actor(request),
        content=body.content,
        path=body.path,
        expected_sha256=None if body.precondition is None else body.precondition.content_sha256,
        full=view == "full",
    )
    return json_response(memory)


@router.delete("/{memory_store_id}/memories/{memory_id}")
async def delete_memory(
    request: Request,
    memory_store_id: str,
    memory_id: str,
    workspace_id: Workspace,
    expected_content_sha256: str | None = None,
) -> JSONBytes:
    if expected_content_sha256 is not None:
        check_sha256(expected_content_sha256, "expected_content_sha256")
    await store(request).memory_stores.delete_memory(
        workspace_id, memory_store_id, memory_id, _actor(request), expected_sha256=expected_content_sha256
    )
    return json_response({"id": memory_id, "type": "memory_deleted"})


# -- versions --------------------------------------------------------------------------------------


@router.get("/{memory_store_id}/memory_versions")
async def list_memory_versions(
    request: Request,
    memory_store_id: str,
    workspace_id: Workspace,
    created: Created,
    memory_id: str | None = None,
    session_id: str | None = None,
    api_key_id: str | None = None,
    service_account_id: str | None = None,
    operation: Operation | None = None,
    view: View = "basic",
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    authors = (
        ("session_actor", session_id),
        ("api_actor", api_key_id),
        ("service_account_actor", service_account_id),
    )
    filters = VersionFilters(
        memory_id=memory_id,
        operation=operation,
        actors=tuple(Actor(kind, value) for kind, value in authors if value is not None),
        created=created,
    )
    listing = f"memory_versions:{memory_store_id}"
    result = await store(request).memory_stores.list_versions(
        workspace_id,
        memory_store_id,
        page_request(listing, page, _page_size(limit, view), "desc"),
        filters,
        full=view == "full",
    )
    return json_response(page_body(listing, result, "desc"))


@router.get("/{memory_store_id}/memory_versions/{memory_version_id}")
async def retrieve_memory_version(
    request: Request, memory_store_id: str, memory_version_id: str, workspace_id: Workspace, view: View = "full"
) -> JSONBytes:
    version = await store(request).memory_stores.get_version(
        workspace_id, memory_store_id, memory_version_id, full=view == "full"
    )
    return json_response(version)


@router.post("/{memory_store_id}/memory_versions/{memory_version_id}/redact")
async def redact_memory_version(
    request: Request, memory_store_id: str, memory_version_id: str, workspace_id: Workspace
) -> JSONBytes:
    version = await store(request).memory_stores.redact_version(
        workspace_id, memory_store_id, memory_version_id, _actor(request)
    )
    return json_response(version)
