"""Shared wire pieces: the request base model, metadata rules, timestamps (layer 0)."""

from __future__ import annotations

import re
from collections.abc import Container
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from agenthost.errors import InvalidRequest

JSON = dict[str, Any]

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_METADATA_PATCH = 2 * MAX_METADATA_PAIRS


class Body(BaseModel):
    """Base of every request body: unknown keys are refused, never ignored.

    Updates tell an omitted key from an explicit ``null`` with ``model_fields_set``
    (the SDK omits unset keys and sends ``null`` for ``None``).
    """

    model_config = ConfigDict(extra="forbid")

    def given(self, field: str) -> bool:
        """True when the client sent this key (even as null)."""
        return field in self.model_fields_set


MAX_ID = 128
MAX_TITLE = 1024
MAX_DESCRIPTION = 2048
MAX_TOOL_DESCRIPTION = 16_384
MAX_MESSAGE = 16_384

MAX_INT32 = 2_147_483_647

Version = Annotated[int, Field(ge=1, le=MAX_INT32)]
"""A version number: stored as a 32-bit integer, so larger values are refused (400), not overflowed."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(value: str, *, nul: bool = False) -> str | None:
    """Why a string cannot be stored, or None: both databases refuse NUL in text, and UTF-8 has no lone surrogates.

    ``nul=True`` lets NUL through, for text stored as UTF-8 bytes.
    """
    found = (_SURROGATE if nul else _UNSTORABLE).search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL characters"
    return f"must not contain a lone UTF-16 surrogate (U+{ord(found.group()):04X})"


def find_unstorable(tree: Any, path: str = "", nul_fields: Container[str] = ()) -> tuple[str, str] | None:
    """The first string (a value or an object key) in a JSON tree that cannot be stored: ``(path, reason)``.

    Strings at the paths in ``nul_fields`` may hold NUL (they are stored as bytes).
    """
    if isinstance(tree, str):
        reason = unstorable(tree, nul=path in nul_fields)
        return None if reason is None else (path or "body", reason)
    if isinstance(tree, dict):
        for key, item in tree.items():
            here = f"{path}.{key}" if path else str(key)
            reason = unstorable(key)
            if reason is not None:
                return f"{path or 'body'}: key {key.encode('utf-8', 'backslashreplace').decode()[:80]!r}", reason
            found = find_unstorable(item, here, nul_fields)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            found = find_unstorable(item, f"{path}[{index}]", nul_fields)
            if found is not None:
                return found
    return None


def _no_nul(value: str) -> str:
    reason = unstorable(value)
    if reason is not None:
        raise ValueError(reason)
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string stored in a text column, for inputs that are not JSON bodies (those are checked whole, once)."""

Id = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_ID)]
"""A reference to a resource by id (ours are 30-odd characters)."""
Title = Annotated[Text, StringConstraints(max_length=MAX_TITLE)]
Description = Annotated[Text, StringConstraints(max_length=MAX_DESCRIPTION)]
"""Free text describing a resource; docs/limits.md lists every bound a request field has."""


def check_metadata(metadata: dict[str, str], field: str = "metadata") -> dict[str, str]:
    """Enforce the metadata limits; raise 400 ``invalid_metadata`` naming the key.

    At most 16 pairs, keys of 1-64 characters and values of at most 512 characters.
    """
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequest(
            f"{field}: at most {MAX_METADATA_PAIRS} pairs are allowed, got {len(metadata)}",
            error_code="invalid_metadata",
        )
    for key, value in metadata.items():
        _check_key(key, field)
        if len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"{field}.{key}: value must be at most {MAX_METADATA_VALUE} characters",
                error_code="invalid_metadata",
            )
    return metadata


def _check_key(key: str, field: str) -> None:
    if not key or len(key) > MAX_METADATA_KEY:
        raise InvalidRequest(
            f"{field}: key {key[:80]!r} must be 1-{MAX_METADATA_KEY} characters", error_code="invalid_metadata"
        )


def patch_metadata(
    current: dict[str, str], patch: dict[str, str | None] | None, *, empty_deletes: bool = False
) -> dict[str, str]:
    """Apply a metadata patch: string upserts, null deletes, omitted keys stay."""
    result = dict(current)
    if patch and len(patch) > MAX_METADATA_PATCH:  # room to delete every stored key and add as many
        raise InvalidRequest(
            f"metadata: at most {MAX_METADATA_PATCH} keys are allowed in a patch, got {len(patch)}",
            error_code="invalid_metadata",
        )
    for key in patch or {}:
        _check_key(key, "metadata")
    for key, value in (patch or {}).items():
        if value is None or (empty_deletes and value == ""):
            result.pop(key, None)
        else:
            result[key] = value
    return check_metadata(result)


def now_us() -> int:
    """Current time in integer microseconds since the epoch: how the store keeps timestamps."""
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def ts(us: int | None) -> str | None:
    """Render stored microseconds as RFC 3339 with a `Z`, or None."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str, field: str) -> int:
    """Parse an ISO 8601 query value into microseconds; 400 naming the field when malformed."""
    try:
        parsed = datetime.fromisoformat(value.strip().upper())  # RFC 3339 allows a lowercase t and z
    except ValueError:
        raise InvalidRequest(f"{field}: {value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1_000_000)
