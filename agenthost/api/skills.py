"""/v1/skills (layer 4): skills and their versions, uploaded as multipart ``files[]`` parts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Annotated, BinaryIO, Literal

from fastapi import APIRouter, Query, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import StreamingResponse

from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.multipart import read_form
from agenthost.api.pagination import page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import InvalidRequest
from agenthost.schemas.skills import MAX_SKILL_FILES, check_display_name

router = APIRouter(prefix="/v1/skills", tags=["skills"], route_class=CheckedRoute)

FILE_FIELDS = frozenset({"files[]", "files"})  # the SDK sends files[]; a plain repeated `files` is read alike
CHUNK = 1 << 20


def _files(form: FormData) -> list[tuple[str, BinaryIO]]:
    """The uploaded files in order, each with the path its part's filename carries."""
    files: list[tuple[str, BinaryIO]] = []
    for key, value in form.multi_items():
        if key not in FILE_FIELDS:
            continue
        if not isinstance(value, UploadFile):
            raise InvalidRequest(f"files[{len(files)}]: must be a file part with the file's path as its filename")
        files.append((value.filename or "", value.file))
    return files


def _fields(form: FormData, allowed: frozenset[str]) -> None:
    unknown = sorted({key for key in form.keys() if key not in FILE_FIELDS | allowed})
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: unknown field")


def _display_name(form: FormData) -> str | None:
    values = form.getlist("display_name")
    if len(values) > 1:
        raise InvalidRequest("display_name: given more than once")
    if not values or values[0] == "":
        return None  # omitted: the SKILL.md name
    if not isinstance(values[0], str):
        raise InvalidRequest("display_name: must be a text field, not a file")
    return check_display_name(values[0])


async def _upload_form(request: Request) -> FormData:
    return await read_form(request, file_fields=FILE_FIELDS, max_files=MAX_SKILL_FILES, max_fields=8)


@router.post("")
async def create_skill(request: Request, workspace_id: Workspace) -> JSONBytes:
    form = await _upload_form(request)
    try:
        _fields(form, frozenset({"display_name"}))
        display_name = _display_name(form)
        skill = await store(request).skills.create(
            workspace_id, _files(form), display_name=display_name, limit=request.app.state.settings.max_skill_bytes
        )
    finally:
        await form.close()
    return json_response(skill)


@router.get("")
async def list_skills(
    request: Request,
    workspace_id: Workspace,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    page: str | None = None,
    source: Literal["custom", "anthropic"] | None = None,
) -> JSONBytes:
    # The source filter narrows the list, so a cursor of one filter is refused under another.
    listing = "skills" if source is None else f"skills:{source}"
    result = await store(request).skills.list(workspace_id, page_request(listing, page, limit, "desc"), source=source)
    return json_response(page_body(listing, result, "desc"))


@router.get("/{skill_id}")
async def retrieve_skill(request: Request, skill_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).skills.get(workspace_id, skill_id))


@router.delete("/{skill_id}")
async def delete_skill(request: Request, skill_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).skills.delete(workspace_id, skill_id)
    return json_response({"id": skill_id, "type": "skill_deleted"})


@router.post("/{skill_id}/versions")
async def create_skill_version(request: Request, skill_id: str, workspace_id: Workspace) -> JSONBytes:
    form = await _upload_form(request)
    try:
        _fields(form, frozenset())
        version = await store(request).skills.create_version(
            workspace_id, skill_id, _files(form), limit=request.app.state.settings.max_skill_bytes
        )
    finally:
        await form.close()
    return json_response(version)


@router.get("/{skill_id}/versions")
async def list_skill_versions(
    request: Request,
    skill_id: str,
    workspace_id: Workspace,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    page: str | None = None,
) -> JSONBytes:
    listing = f"skill_versions:{skill_id}"
    request_page = page_request(listing, page, limit or 20, "desc")
    result = await store(request).skills.versions(workspace_id, skill_id, request_page)
    return json_response(page_body(listing, result, "desc"))


@router.get("/{skill_id}/versions/{version}")
async def retrieve_skill_version(request: Request, skill_id: str, version: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).skills.get_version(workspace_id, skill_id, version))


@router.delete("/{skill_id}/versions/{version}")
async def delete_skill_version(request: Request, skill_id: str, version: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).skills.delete_version(workspace_id, skill_id, version)
    return json_response({"id": version, "type": "skill_version_deleted"})


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()


@router.get("/{skill_id}/versions/{version}/content")
async def download_skill_version(
    request: Request, skill_id: str, version: str, workspace_id: Workspace
) -> StreamingResponse:
    """The version's files as a zip whose single top-level directory is the skill's name."""
    archive = await store(request).skills.archive(workspace_id, skill_id, version)
    handle = await asyncio.to_thread(archive.open)
    headers = {
        "content-length": str(os.fstat(handle.fileno()).st_size),
        "content-disposition": f'attachment; filename="{archive.name}.zip"',
    }
    return StreamingResponse(_chunks(handle), media_type="application/zip", headers=headers)
