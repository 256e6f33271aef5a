"""Keyset pagination and query helpers shared by every repository (layer 1).

A page is read by key (an id, a version or a sequence number), never by offset, so
pages stay stable while rows are added. One extra row is read to know whether
another page exists, so the last page always reports no next key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from agenthost.schemas.common import JSON

Order = Literal["asc", "desc"]
Lock = Literal["update", "share"] | None
"""Row lock for read-modify-write on PostgreSQL (``FOR UPDATE`` / ``FOR SHARE``); SQLite has one writer anyway."""


def locked(query: sa.Select[Any], lock: Lock, table: sa.Table) -> sa.Select[Any]:
    """Add ``FOR UPDATE`` or ``FOR SHARE`` of ``table`` to a query (rendered only on PostgreSQL)."""
    if lock is None:
        return query
    return query.with_for_update(read=lock == "share", of=table)


@dataclass(frozen=True)
class PageRequest:
    """What one page asks for: ``after`` continues forwards, ``before`` goes back."""

    limit: int
    order: Order = "desc"
    after: Any = None
    before: Any = None


PAGE_BYTES = 4 << 20
"""Most JSON one list page carries: a page of large items ends early, and ``next_page`` continues it."""


@dataclass
class Page:
    """A page of wire objects and the keys that continue it either way (None: nothing there).

    Items are JSON objects, or ``orjson.Fragment`` holding one already serialised.
    """

    items: list[Any] = field(default_factory=list)
    next_key: Any = None
    prev_key: Any = None


def fetch_page(
    conn: sa.Connection,
    query: sa.Select[Any],
    key: sa.ColumnElement[Any] | tuple[sa.ColumnElement[Any], ...],
    request: PageRequest,
    render: Callable[[Any], JSON],
    key_of: Callable[[Any], Any],
) -> Page:
    """Run ``query`` for one page ordered by ``key`` (a column, or a tuple compared as a row value).

    Each item is serialised here, once (the response embeds the bytes), and the page ends early,
    with a key to continue, once its items hold ``PAGE_BYTES``; it always holds at least one.
    """
    columns = key if isinstance(key, tuple) else (key,)
    compared = sa.tuple_(*columns) if isinstance(key, tuple) else key

    def bound(value: Any) -> Any:
        return sa.tuple_(*[sa.literal(v) for v in value]) if isinstance(key, tuple) else value

    backwards = request.before is not None
    ascending = (request.order == "asc") != backwards
    if request.after is not None:
        after = bound(request.after)
        query = query.where(compared > after if request.order == "asc" else compared < after)
    if backwards:
        before = bound(request.before)
        query = query.where(compared < before if request.order == "asc" else compared > before)
    query = query.order_by(*[c.asc() if ascending else c.desc() for c in columns]).limit(request.limit + 1)
    rows: list[Any] = []
    items: list[Any] = []
    size = 0
    more = False
    result = conn.execute(query)
    for row in result:
        if len(rows) == request.limit:
            more = True
            break
        item = orjson.dumps(render(row))
        if rows and size + len(item) > PAGE_BYTES:
            more = True
            break
        rows.append(row)
        items.append(orjson.Fragment(item))
        size += len(item)
    result.close()
    if backwards:
        rows.reverse()
        items.reverse()
    if not rows:
        return Page()
    first, last = key_of(rows[0]), key_of(rows[-1])
    if backwards:
        return Page(items, next_key=last, prev_key=first if more else None)
    return Page(items, next_key=last if more else None, prev_key=first if request.after is not None else None)


def created_filter(query: sa.Select[Any], column: sa.ColumnElement[Any], created: dict[str, int]) -> sa.Select[Any]:
    """Apply ``created_at[gt|gte|lt|lte]`` bounds given in microseconds."""
    for op, bound in created.items():
        if op == "gt":
            query = query.where(column > bound)
        elif op == "gte":
            query = query.where(column >= bound)
        elif op == "lt":
            query = query.where(column < bound)
        else:
            query = query.where(column <= bound)
    return query
