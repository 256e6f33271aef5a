"""Session resources: request bodies, mount paths and the wire objects (layer 0; REFERENCE §6.4).

Files and memory stores are implemented; GitHub repositories are refused by name until they are.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal, cast

from pydantic import StringConstraints, ValidationError

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.common import JSON, Body, Text

UPLOADS = "/mnt/session/uploads"
MAX_FILES_PER_SESSION = 500
MAX_MOUNT_PATH = 1024


class FileResourceParam(Body):
    type: Literal["file"]
    file_id: Text
    mount_path: Text | None = None


class MemoryStoreResourceParam(Body):
    type: Literal["memory_store"]
    memory_store_id: Text
    access: Literal["read_write", "read_only"] | None = None
    instructions: Annotated[Text, StringConstraints(max_length=4096)] | None = None


ResourceParam = FileResourceParam | MemoryStoreResourceParam
MEMORY = "/mnt/memory"
MAX_MEMORY_STORES = 8


class ResourceUpdate(Body):
    authorization_token: Text


def parse_resource(raw: Any, field: str) -> ResourceParam:
    """Validate one ``resources[]`` entry; the kinds agenthost does not implement yet are refused by name."""
    prefix = f"{field}." if field else ""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "github_repository":
        raise NotSupported(field or "type", f"{kind} resources")
    if kind not in ("file", "memory_store"):
        raise InvalidRequest(f"{prefix}type: must be one of file, github_repository, memory_store")
    model: type[Body] = FileResourceParam if kind == "file" else MemoryStoreResourceParam
    try:
        param = model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise InvalidRequest(f"{prefix}{where}: {message}") from None
    if isinstance(param, FileResourceParam) and not param.file_id:
        raise InvalidRequest(f"{prefix}file_id: must not be empty")
    return cast(ResourceParam, param)


def parse_added(raw: dict[str, Any]) -> FileResourceParam:
    """The body of ``POST /v1/sessions/{id}/resources``: only files can be added after create."""
    kind = raw.get("type")
    if kind in ("github_repository", "memory_store"):
        raise InvalidRequest(f"type: {kind} resources can only be attached when the session is created")
    param = parse_resource(raw, "")
    assert isinstance(param, FileResourceParam)
    return param


def memory_resource_json(param: MemoryStoreResourceParam, name: str, description: str, slug: str) -> JSON:
    """A memory store as attached to a session: its name and description as they were then (REFERENCE §6.4)."""
    return {
        "type": "memory_store",
        "memory_store_id": param.memory_store_id,
        "access": param.access or "read_write",
        "description": description,
        "instructions": param.instructions,
        "mount_path": f"{MEMORY}/{slug}",
        "name": name,
    }


def mount_path(file_id: str, given: str | None, field: str) -> str:
    """Where a file appears in the sandbox: under /mnt/session/uploads (``/data.csv`` -> ``.../uploads/data.csv``)."""
    if given is None:
        return f"{UPLOADS}/{file_id}"
    path = given if given.startswith(UPLOADS + "/") else f"{UPLOADS}/{given.lstrip('/')}"
    relative = path[len(UPLOADS) + 1 :]
    parts = relative.split("/")
    if (
        not relative
        or len(path.encode()) > MAX_MOUNT_PATH
        or any(part in ("", ".", "..") for part in parts)
        or posixpath.normpath(path) != path
    ):
        raise InvalidRequest(f"{field}: {given!r} is not a file path under {UPLOADS}/ (no '.', '..' or empty segments)")
    return path


def check_mounts(resources: list[JSON], field: str) -> None:
    """No two files at one path, none inside another's path, and at most MAX_FILES_PER_SESSION."""
    paths = sorted(r["mount_path"] for r in resources if r["type"] == "file")
    if len(paths) > MAX_FILES_PER_SESSION:
        raise InvalidRequest(f"{field}: a session holds at most {MAX_FILES_PER_SESSION} files")
    for before, after in zip(paths, paths[1:], strict=False):
        if after == before or after.startswith(before + "/"):
            raise InvalidRequest(f"{field}: mount_path {after} collides with another file at {before}")


def file_resource_json(resource_id: str, file_id: str, path: str, created_at: str, updated_at: str) -> JSON:
    return {
        "type": "file",
        "id": resource_id,
        "file_id": file_id,
        "mount_path": path,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def uploads_relative(path: str) -> str:
    """A file resource's mount path relative to the uploads directory."""
    return path[len(UPLOADS) + 1 :]
