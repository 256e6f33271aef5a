"""Session resources: request bodies, mount paths and the wire objects (layer 0).

File resources, memory stores and GitHub repositories are implemented. A repository's
``authorization_token`` is write-only: it is never part of the wire object (``repository_json``);
the store keeps it sealed apart (docs/repositories.md).
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal, cast

from pydantic import Field, StringConstraints, ValidationError

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import JSON, Body, Id, Text

UPLOADS = "/mnt/session/uploads"
WORKSPACE = "/workspace"
MAX_FILES_PER_SESSION = 500
MAX_REPOSITORIES_PER_SESSION = 20
"""Our pick (the contract names no limit): each repository is a full clone before the first tool call."""
MAX_MOUNT_PATH = 1024
MAX_TOKEN = 4096
GITHUB = "https://github.com"
# GitHub's own rules: owners are 1-39 letters, digits and inner hyphens; repositories 1-100 of
# letters, digits, '.', '_' and '-'. SSH forms, `.git`, other hosts, queries and deeper paths are refused.
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


class FileResourceParam(Body):
    type: Literal["file"]
    file_id: Id
    mount_path: Text | None = None


class BranchCheckout(Body):
    type: Literal["branch"]
    name: Text


class CommitCheckout(Body):
    type: Literal["commit"]
    sha: Text


Checkout = Annotated[BranchCheckout | CommitCheckout, Field(discriminator="type")]


class RepositoryResourceParam(Body):
    """``{type: github_repository, url, authorization_token?, checkout?, mount_path?}``."""

    type: Literal["github_repository"]
    url: Text
    authorization_token: Text | None = None
    checkout: Checkout | None = None
    mount_path: Text | None = None


class MemoryStoreResourceParam(Body):
    type: Literal["memory_store"]
    memory_store_id: Id
    access: Literal["read_write", "read_only"] | None = None
    instructions: Annotated[Text, StringConstraints(max_length=4096)] | None = None


ResourceParam = FileResourceParam | RepositoryResourceParam | MemoryStoreResourceParam
MEMORY = "/mnt/memory"
MAX_MEMORY_STORES = 8
MAX_SEGMENT = 255  # bytes: what a filesystem takes for one name


class ResourceUpdate(Body):
    authorization_token: Text


def _validated(model: type[Body], raw: Any, prefix: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise InvalidRequest(f"{prefix}{where}: {message}") from None


def parse_resource(raw: Any, field: str) -> ResourceParam:
    """Validate one ``resources[]`` entry; the kinds agenthost does not implement yet are refused by name."""
    prefix = f"{field}." if field else ""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "memory_store":
        return cast(MemoryStoreResourceParam, _validated(MemoryStoreResourceParam, raw, prefix))
    if kind == "github_repository":
        return _repository(_validated(RepositoryResourceParam, raw, prefix), prefix)
    if kind != "file":
        raise InvalidRequest(f"{prefix}type: must be one of file, github_repository, memory_store")
    param: FileResourceParam = _validated(FileResourceParam, raw, prefix)
    if not param.file_id:
        raise InvalidRequest(f"{prefix}file_id: must not be empty")
    return param


def _repository(param: RepositoryResourceParam, prefix: str) -> RepositoryResourceParam:
    """Check a repository's url, checkout and token; the url is kept without a trailing slash."""
    owner, repo = repository_name(param.url, f"{prefix}url")
    url = f"{GITHUB}/{owner}/{repo}"
    checkout = param.checkout
    if isinstance(checkout, BranchCheckout):
        check_branch(checkout.name, f"{prefix}checkout.name")
    elif isinstance(checkout, CommitCheckout):
        if not _SHA.fullmatch(checkout.sha):
            raise InvalidRequest(f"{prefix}checkout.sha: must be a full commit SHA (40 or 64 hexadecimal digits)")
        checkout = CommitCheckout(type="commit", sha=checkout.sha.lower())
    if param.authorization_token is not None:
        check_token(param.authorization_token, f"{prefix}authorization_token")
    return param.model_copy(update={"url": url, "checkout": checkout})


def repository_name(url: str, field: str) -> tuple[str, str]:
    """``(owner, repo)`` of ``https://github.com/<owner>/<repo>`` (one trailing slash tolerated); 400 otherwise."""
    rest = url[len(GITHUB) + 1 :] if url.startswith(GITHUB + "/") else None
    parts = rest.removesuffix("/").split("/") if rest else []
    if (
        len(parts) != 2
        or not _OWNER.fullmatch(parts[0])
        or parts[0].endswith("-")
        or not _REPO.fullmatch(parts[1])
        or parts[1] in (".", "..")
        or parts[1].lower().endswith(".git")
    ):
        raise InvalidRequest(
            f"{field}: {url[:200]!r} is not a GitHub repository URL of the form https://github.com/<owner>/<repo> "
            "(no .git suffix, no SSH form, nothing after the repository name)"
        )
    return parts[0], parts[1]


def check_branch(name: str, field: str) -> None:
    """A branch name git accepts, and that cannot pass for a command-line option."""
    if (
        not name
        or len(name) > 255
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", ".", ".lock"))
        or "/." in name
        or _BAD_REF.search(name)
    ):
        raise InvalidRequest(f"{field}: {name[:200]!r} is not a valid branch name")


def check_token(token: str, field: str) -> None:
    """A token goes into an HTTP header: it must be non-empty printable ASCII without spaces."""
    if not token or len(token) > MAX_TOKEN or not all("!" <= char <= "~" for char in token):
        raise InvalidRequest(
            f"{field}: must be 1-{MAX_TOKEN} printable ASCII characters without spaces or control characters"
        )


def parse_added(raw: dict[str, Any]) -> FileResourceParam:
    """The body of ``POST /v1/sessions/{id}/resources``: only files can be added after create."""
    kind = raw.get("type")
    if kind in ("github_repository", "memory_store"):
        raise InvalidRequest(f"type: {kind} resources can only be attached when the session is created")
    param = parse_resource(raw, "")
    assert isinstance(param, FileResourceParam)
    return param


def repository_mount_path(repo: str, given: str | None, field: str) -> str:
    """Where a repository is cloned: ``/workspace/<repo>`` by default; relative paths are under /workspace."""
    if given is None:
        return f"{WORKSPACE}/{repo}"
    path = given if given.startswith("/") else f"{WORKSPACE}/{given}"
    relative = path[len(WORKSPACE) + 1 :] if path.startswith(WORKSPACE + "/") else ""
    if (
        not relative
        or len(path.encode()) > MAX_MOUNT_PATH
        or any(part in ("", ".", "..") for part in relative.split("/"))
        or posixpath.normpath(path) != path
    ):
        raise InvalidRequest(
            f"{field}: {given[:200]!r} is not a directory under {WORKSPACE}/ (no '.', '..' or empty segments)"
        )
    return path


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
        or any(part in ("", ".", "..") or len(part.encode()) > MAX_SEGMENT for part in parts)
        or posixpath.normpath(path) != path
    ):
        raise InvalidRequest(
            f"{field}: {given[:200]!r} is not a file path under {UPLOADS}/ (no '.', '..' or empty segments, "
            f"names of at most {MAX_SEGMENT} bytes)"
        )
    return path


def check_mounts(resources: list[JSON], field: str) -> None:
    """No two files (or repositories) at one path, none inside another's path, and the per-session limits."""
    for kind, noun, limit in (
        ("file", "file", MAX_FILES_PER_SESSION),
        ("github_repository", "repository", MAX_REPOSITORIES_PER_SESSION),
    ):
        paths = sorted(r["mount_path"] for r in resources if r["type"] == kind)
        if len(paths) > limit:
            raise InvalidRequest(f"{field}: a session holds at most {limit} {noun} resources")
        taken: set[str] = set()
        for path in paths:
            if path in taken:
                raise InvalidRequest(f"{field}: mount_path {path} collides with another {noun} at the same path")
            taken.add(path)
        for path in paths:
            parts = path.split("/")
            for depth in range(2, len(parts)):  # every ancestor directory of the path
                ancestor = "/".join(parts[:depth])
                if ancestor in taken:
                    raise InvalidRequest(f"{field}: mount_path {path} collides with another {noun} at {ancestor}")


def file_resource_json(resource_id: str, file_id: str, path: str, created_at: str, updated_at: str) -> JSON:
    return {
        "type": "file",
        "id": resource_id,
        "file_id": file_id,
        "mount_path": path,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def repository_json(
    resource_id: str, url: str, path: str, checkout: JSON | None, created_at: str, updated_at: str
) -> JSON:
    """The wire object of a repository resource: never its token."""
    return {
        "type": "github_repository",
        "id": resource_id,
        "url": url,
        "mount_path": path,
        "checkout": checkout,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def uploads_relative(path: str) -> str:
    """A file resource's mount path relative to the uploads directory."""
    return path[len(UPLOADS) + 1 :]


def memory_resource_json(param: MemoryStoreResourceParam, name: str, description: str, slug: str) -> JSON:
    """A memory store as attached to a session: its name and description as they were then."""
    return {
        "type": "memory_store",
        "memory_store_id": param.memory_store_id,
        "access": param.access or "read_write",
        "description": description,
        "instructions": param.instructions,
        "mount_path": f"{MEMORY}/{slug}",
        "name": name,
    }
