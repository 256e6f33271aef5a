"""Memory stores: request bodies, path and content rules, actors and wire objects (layer 0).

The rules here are shared by the API and by the engine's writes (``store/memory.py`` calls
them), so a memory written through ``/mnt/memory`` obeys exactly what the API enforces.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import JSON, Body, Text, check_metadata, patch_metadata, ts

MAX_CONTENT_BYTES = 102_400
MAX_PATH_BYTES = 1024
MAX_SEGMENTS = 20
MAX_MEMORIES = 2000
"""Memories a store may hold; creating one more fails, edits and deletes still work."""
FULL_VIEW_PAGE = 20
"""With ``view=full`` a list page holds at most this many items, whatever ``limit`` says."""

View = Literal["basic", "full"]
Operation = Literal["created", "modified", "deleted"]
ActorType = Literal["session_actor", "api_actor", "user_actor", "service_account_actor"]

_ACTOR_ID_FIELD: dict[str, str] = {
    "session_actor": "session_id",
    "api_actor": "api_key_id",
    "user_actor": "user_id",
    "service_account_actor": "service_account_id",
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SLUG_GAPS = re.compile(r"[^A-Za-z0-9]+")
# Characters a path may not hold (the SDK's create docs): control and format characters, the line
# and paragraph separators, and lone surrogates (which are not text and cannot be stored).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


# -- text hygiene ----------------------------------------------------------------------------------

CleanText = Text
"""Text a database can store (no NUL, no lone surrogate): the API refuses the rest in every body already."""
StoreName = Annotated[CleanText, StringConstraints(min_length=1, max_length=255)]
StoreDescription = Annotated[CleanText, StringConstraints(max_length=1024)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


# -- request bodies --------------------------------------------------------------------------------


class MemoryStoreCreate(Body):
    name: StoreName
    description: StoreDescription | None = None
    metadata: dict[CleanText, CleanText] = Field(default_factory=dict)


class MemoryStoreUpdate(Body):
    name: StoreName | None = None
    description: StoreDescription | None = None
    metadata: dict[CleanText, CleanText | None] | None = None


class Precondition(Body):
    type: Literal["content_sha256"]
    content_sha256: Sha256


class MemoryCreate(Body):
    path: str  # check_path refuses what a path may not hold
    content: str | None  # any text, NUL included: it is stored as UTF-8 bytes (check_content)


class MemoryUpdate(Body):
    content: str | None = None
    path: str | None = None
    precondition: Precondition | None = None


# -- rules -----------------------------------------------------------------------------------------


def check_store_name(name: str, field: str = "name") -> str:
    """1-255 characters without control characters (the SDK's create docs)."""
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidRequest(f"{field}: must not contain control characters")
    return name


def store_fields_from_create(body: MemoryStoreCreate) -> JSON:
    """The stored fields of a new memory store."""
    return {
        "name": check_store_name(body.name),
        "description": body.description or "",
        "metadata": check_metadata(body.metadata),
    }


def store_fields_from_update(current: JSON, body: MemoryStoreUpdate) -> JSON:
    """Stored fields after an update: omitted keys keep their value, ``description: null`` clears it like ``""``,
    ``metadata`` is a patch (string upserts, null deletes) and ``null`` leaves it as it is."""
    result = dict(current)
    if body.given("name"):
        if body.name is None:
            raise InvalidRequest("name: cannot be cleared")
        result["name"] = check_store_name(body.name)
    if body.given("description"):
        result["description"] = body.description or ""
    if body.given("metadata"):
        result["metadata"] = patch_metadata(current["metadata"], body.metadata)
    return result


def memory_slug(name: str) -> str:
    """The directory a store is mounted at under ``/mnt/memory/``.

    Every run of characters other than ASCII letters and digits becomes one ``-`` and the
    result is lowercased. agenthost also trims ``-`` from both ends, and a name with no ASCII
    letter or digit at all gets ``memory-store``, so the slug is never empty or hidden.
    """
    slug = _SLUG_GAPS.sub("-", name).lower().strip("-")
    return slug or "memory-store"


def check_path(path: str, field: str = "path") -> str:
    """A memory path as the API and the SDK's docs define it; 400 naming ``field`` otherwise.

    Paths that are not in Unicode Normalization Form C are refused, never normalised: a path is
    an identifier, and changing it silently would answer with another path than the one sent.
    """
    if not path.startswith("/"):
        raise InvalidRequest(f"{field}: must start with '/'")
    for char in path:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise InvalidRequest(
                f"{field}: must not contain control or format characters, U+2028, U+2029 or unpaired surrogates "
                f"(found U+{ord(char):04X})"
            )
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidRequest(f"{field}: must be at most {MAX_PATH_BYTES} bytes in UTF-8")
    if not unicodedata.is_normalized("NFC", path):
        raise InvalidRequest(f"{field}: must be in Unicode Normalization Form C")
    segments = path[1:].split("/")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidRequest(f"{field}: must have at most {MAX_SEGMENTS} segments, got {len(segments)}")
    for segment in segments:
        if segment == "":
            raise InvalidRequest(f"{field}: segments must not be empty (no '//' and no trailing '/')")
        if segment in (".", ".."):
            raise InvalidRequest(f"{field}: segments must not be '.' or '..'")
    return path


def check_path_prefix(prefix: str, field: str = "path_prefix") -> str:
    """A list prefix: ``/`` or a path ending in ``/``, so it matches whole segments."""
    if prefix == "/":
        return prefix
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise InvalidRequest(f"{field}: must start and end with '/', e.g. '/notes/'")
    check_path(prefix[:-1], field)
    return prefix


def check_content(content: str | None, field: str = "content") -> bytes:
    """The UTF-8 bytes of a memory's content; 400 when null or over 102,400 bytes."""
    if content is None:
        raise InvalidRequest(f'{field}: must be a string (pass "" for an empty memory)')
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{field}: must be valid Unicode text (it holds an unpaired surrogate)") from None
    if len(data) > MAX_CONTENT_BYTES:
        raise InvalidRequest(f"{field}: must be at most {MAX_CONTENT_BYTES} bytes in UTF-8, got {len(data)}")
    return data


def check_sha256(value: str, field: str) -> str:
    """64 lowercase hexadecimal characters, as ``content_sha256`` is written."""
    if not _SHA256.match(value):
        raise InvalidRequest(f"{field}: must be 64 lowercase hexadecimal characters")
    return value


def content_sha256(data: bytes) -> str:
    """Lowercase hex SHA-256 of the content's UTF-8 bytes; no normalisation."""
    return hashlib.sha256(data).hexdigest()


# -- actors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who wrote or redacted a memory version: a kind and the id it names."""

    type: ActorType
    id: str

    @classmethod
    def session(cls, session_id: str) -> Actor:
        """An agent writing through its session's ``/mnt/memory`` mount."""
        return cls("session_actor", session_id)

    @classmethod
    def api(cls, api_key_id: str) -> Actor:
        """A caller of the API, named by the id of its key (never the key)."""
        return cls("api_actor", api_key_id)

    def json(self) -> JSON:
        return {"type": self.type, _ACTOR_ID_FIELD[self.type]: self.id}


def actor_json(actor_type: str | None, actor_id: str | None) -> JSON | None:
    """The wire Actor of stored columns, or None when nothing was recorded."""
    if actor_type is None or actor_id is None:
        return None
    return {"type": actor_type, _ACTOR_ID_FIELD[actor_type]: actor_id}


# -- wire objects ----------------------------------------------------------------------------------


def memory_store_json(row: Any) -> JSON:
    """The wire MemoryStore."""
    return {
        "id": row.id,
        "type": "memory_store",
        "name": row.name,
        "description": row.description,
        "metadata": row.metadata,
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
        "archived_at": ts(row.archived_at),
    }


def memory_json(row: Any, full: bool) -> JSON:
    """The wire Memory; ``content`` is null unless ``full``."""
    return {
        "id": row.id,
        "type": "memory",
        "memory_store_id": row.store_id,
        "path": row.path,
        "content": row.content.decode("utf-8") if full else None,
        "content_sha256": row.content_sha256,
        "content_size_bytes": row.content_size_bytes,
        "memory_version_id": row.version_id,
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
    }


def memory_prefix_json(path: str) -> JSON:
    """A directory marker standing for deeper memories in a ``depth=1`` listing."""
    return {"type": "memory_prefix", "path": path}


def memory_version_json(row: Any, full: bool) -> JSON:
    """The wire MemoryVersion: deleted and redacted versions carry no content."""
    return {
        "id": row.id,
        "type": "memory_version",
        "memory_id": row.memory_id,
        "memory_store_id": row.store_id,
        "operation": row.operation,
        "path": row.path,
        "content": row.content.decode("utf-8") if full and row.content is not None else None,
        "content_sha256": row.content_sha256,
        "content_size_bytes": row.content_size_bytes,
        "created_at": ts(row.created_at),
        "created_by": actor_json(row.actor_type, row.actor_id),
        "redacted_at": ts(row.redacted_at),
        "redacted_by": actor_json(row.redactor_type, row.redactor_id),
    }
