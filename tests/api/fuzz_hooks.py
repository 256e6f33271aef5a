"""Schemathesis hooks for the fuzzer run of ``test_fuzz.py``: what the schema cannot tell a generator.

A page cursor is opaque: a string the fuzzer makes up is rightly refused (400), so made-up
cursors are dropped before they are sent and only cursors from earlier answers (reached through links) are sent.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
import schemathesis


def issued(cursor: str) -> bool:
    """Whether ``cursor`` has the shape of one this server mints (``page_`` + base64 of its JSON)."""
    raw = cursor.removeprefix("page_")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(data, dict) and {"l", "o", "d", "k"} <= data.keys()


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Every phase's requests pass here, the coverage phase's too (it applies no generation hooks)."""
    query = case.query
    if query and isinstance(query.get("page"), str) and not issued(query["page"]):
        del query["page"]
