"""Opaque page cursors and the shared list query parameters (layer 4).

A cursor is URL-safe base64 of ``{"l": list, "o": order, "d": "n"|"p", "k": key}``: it
names the list it belongs to and the order it was minted with (reusing it elsewhere or
with another order is a 400), and which way it points, so ``GET /v1/sessions`` can page
backwards with ``prev_page``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

import orjson
from fastapi import Query

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import JSON, parse_ts, unstorable
from agenthost.schemas.memory import MAX_PATH_BYTES
from agenthost.store.paging import Page, PageRequest

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)


def encode_cursor(listing: str, order: str, direction: str, key: Any) -> str:
    raw = orjson.dumps({"l": listing, "o": order, "d": direction, "k": key})
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, listing: str, key_type: type) -> tuple[str, str, Any]:
    try:
        raw = cursor.removeprefix("page_")
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        name, order, direction, key = data["l"], data["o"], data["d"], data["k"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidRequest("page: not a cursor issued by this server") from None
    if order not in ("asc", "desc") or direction not in ("n", "p") or not _is_key(key, key_type):
        raise InvalidRequest("page: not a cursor issued by this server")
    if name != listing:
        raise InvalidRequest(f"page: this cursor belongs to another list ({name}), not {listing}")
    return order, direction, key


def _is_key(key: Any, key_type: type) -> bool:
    """Whether a decoded key is one this server could have minted: what the store can compare without overflow."""
    if type(key) is not key_type:
        return False
    if isinstance(key, list):
        return len(key) == 2 and all(type(part) is int and MIN_INT64 <= part <= MAX_INT64 for part in key)
    if isinstance(key, int):
        return MIN_INT64 <= key <= MAX_INT64
    return isinstance(key, str) and len(key) <= MAX_PATH_BYTES and unstorable(key) is None  # an id or a memory path


def page_request(
    listing: str, page: str | None, limit: int, order: Literal["asc", "desc"], key_type: type = str
) -> PageRequest:
    """Turn ``page``/``limit``/``order`` into a store page request for the list called ``listing``."""
    if page is None:
        return PageRequest(limit=limit, order=order)
    cursor_order, direction, key = decode_cursor(page, listing, key_type)
    if cursor_order != order:
        raise InvalidRequest(f"page: this cursor was issued for order={cursor_order}, not order={order}")
    if direction == "n":
        return PageRequest(limit=limit, order=cursor_order, after=key)  # type: ignore[arg-type]
    return PageRequest(limit=limit, order=cursor_order, before=key)  # type: ignore[arg-type]


def page_body(listing: str, result: Page, order: str, *, bidirectional: bool = False) -> JSON:
    """The wire page: ``{data, next_page}`` (+ ``prev_page`` for the sessions list)."""
    body: JSON = {
        "data": result.items,
        "next_page": None if result.next_key is None else encode_cursor(listing, order, "n", result.next_key),
    }
    if bidirectional:
        body["prev_page"] = None if result.prev_key is None else encode_cursor(listing, order, "p", result.prev_key)
    return body


def limit_param(default: int = 20, maximum: int = 100) -> Any:
    return Query(default, ge=1, le=maximum, description=f"Page size, 1-{maximum}.")


def created_bounds(
    gt: Annotated[str | None, Query(alias="created_at[gt]")] = None,
    gte: Annotated[str | None, Query(alias="created_at[gte]")] = None,
    lt: Annotated[str | None, Query(alias="created_at[lt]")] = None,
    lte: Annotated[str | None, Query(alias="created_at[lte]")] = None,
) -> dict[str, int]:
    """``created_at[gt|gte|lt|lte]`` filters as microsecond bounds."""
    given = {"gt": gt, "gte": gte, "lt": lt, "lte": lte}
    return {op: parse_ts(value, f"created_at[{op}]") for op, value in given.items() if value is not None}
