"""/v1/files (layer 4): upload, list, metadata, download, delete."""

from __future__ import annotations

import mimetypes
import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse

from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.multipart import read_form
from agenthost.api.pagination import page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.errors import InvalidRequest
from agenthost.schemas.files import guess_mime

router = APIRouter(prefix="/v1/files", tags=["files"], route_class=CheckedRoute)

MIN_EXPIRY, MAX_EXPIRY = 3600, 7_776_000
MAX_IDS = 100


def _filename(part: UploadFile, mime_type: str) -> str:
    """The last path component of the part's filename; ``unnamed`` plus the type's extension when empty."""
    name = (part.filename or "").replace("\\", "/").rsplit("/", 1)[-1]  # NUL is refused with the form
    if name in ("", ".", ".."):
        return "unnamed" + (mimetypes.guess_extension(mime_type) or "")
    return name


def _expiry(raw: object) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"\s*-?[0-9]{1,12}\s*", raw):
        raise InvalidRequest("expires_in_seconds: must be an integer number of seconds")
    seconds = int(raw)
    if not MIN_EXPIRY <= seconds <= MAX_EXPIRY:
        raise InvalidRequest(f"expires_in_seconds: must be between {MIN_EXPIRY} and {MAX_EXPIRY}")
    return seconds


@router.post("")
async def upload_file(request: Request, workspace_id: Workspace) -> JSONBytes:
    form = await read_form(request, file_fields=frozenset({"file"}), max_files=1, max_fields=4)
    try:
        unknown = sorted(set(form.keys()) - {"file", "expires_in_seconds"})
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown field")
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise InvalidRequest("file: a file part named `file` is required")
        expires_in = _expiry(form.get("expires_in_seconds"))
        mime_type = guess_mime(part.filename or "", part.content_type)
        settings = request.app.state.settings
        uploaded = await store(request).files.upload(
            workspace_id,
            part.file,
            filename=_filename(part, mime_type),
            mime_type=mime_type,
            limit=settings.max_file_bytes,
            expires_in=expires_in,
        )
    finally:
        await form.close()
    return json_response(uploaded)


@router.get("")
async def list_files(
    request: Request,
    workspace_id: Workspace,
    ids: Annotated[list[str] | None, Query(alias="ids[]")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    page: str | None = None,
    scope_id: str | None = None,
) -> JSONBytes:
    files = store(request).files
    if ids is not None:
        if limit is not None or page is not None:
            raise InvalidRequest("ids: cannot be combined with page or limit")
        unique = list(dict.fromkeys(ids))
        if len(unique) > MAX_IDS:
            raise InvalidRequest(f"ids: at most {MAX_IDS} ids are allowed")
        return json_response({"data": await files.by_ids(workspace_id, unique), "next_page": None})
    listing = "files" if scope_id is None else f"files:{scope_id}"
    result = await files.list(workspace_id, page_request(listing, page, limit or 20, "desc"), scope_id=scope_id)
    return json_response(page_body(listing, result, "desc"))


@router.get("/{file_id}")
async def retrieve_file(request: Request, file_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).files.get(workspace_id, file_id))


@router.get("/{file_id}/content")
async def download_file(request: Request, file_id: str, workspace_id: Workspace) -> FileResponse:
    path, metadata = await store(request).files.content(workspace_id, file_id)
    return FileResponse(path, media_type=metadata["mime_type"], filename=metadata["filename"])


@router.delete("/{file_id}")
async def delete_file(request: Request, file_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).files.delete(workspace_id, file_id)
    return json_response({"id": file_id, "type": "file_deleted"})
