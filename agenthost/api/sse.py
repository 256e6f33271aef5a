"""Server-Sent Events framing (layer 4).

Every frame names its event (``event: <type>``): the SDK drops frames without an
``event:`` line. ``ping`` frames keep idle streams open and are skipped by the SDK.
"""

from __future__ import annotations

import orjson

from agenthost.schemas.common import JSON

PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def frame(event: JSON) -> bytes:
    """One SSE frame for a persisted event: ``id``, ``event`` and single-line JSON ``data``."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event["id"].encode(), event["type"].encode(), orjson.dumps(event))


def preview_frame(preview: JSON) -> bytes:
    """A live preview's frame: no ``id`` line, so a client resuming with ``Last-Event-ID`` resumes after
    the last persisted event it saw."""
    return b"event: %s\ndata: %s\n\n" % (preview["type"].encode(), orjson.dumps(preview))


def error_frame(error_type: str, message: str) -> bytes:
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: %s\n\n" % body
