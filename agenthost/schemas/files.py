"""Files: the wire FileMetadata and content types (layer 0)."""

from __future__ import annotations

import mimetypes
from typing import Any

from agenthost.schemas.common import JSON, ts


def file_json(row: Any) -> JSON:
    """The wire FileMetadata."""
    return {
        "id": row.id,
        "type": "file",
        "filename": row.filename,
        "mime_type": row.mime_type,
        "size_bytes": row.size_bytes,
        "created_at": ts(row.created_at),
        "downloadable": row.downloadable,
        "expires_at": ts(row.expires_at),
        "scope": {"type": "session", "id": row.session_id} if row.session_id else None,
    }


def guess_mime(filename: str, given: str | None = None) -> str:
    """The part's own content type, else one guessed from the name, else ``application/octet-stream``."""
    if given and given != "application/octet-stream":
        return given
    return mimetypes.guess_type(filename)[0] or given or "application/octet-stream"
