"""Memory stores, memories and memory versions (layer 1).

A memory is one row of ``memories`` (its current state). Every change to it appends one
immutable row to ``memory_versions`` in the same transaction, naming its author (an
:class:`~agenthost.schemas.memory.Actor`); versions outlive the memory and go with the store.
Every memory write locks the store's row first (``FOR UPDATE`` on PostgreSQL; SQLite has one
writer), so the path-overlap check and the 2,000-memory cap hold under concurrent writers.

Two ways in:

- :class:`MemoryStores` serves the API: every call is scoped to a workspace.
- The module functions :func:`write_memory`, :func:`delete_memory_by_path` and :func:`list_all`
  take a connection and a store id only. They are for the engine, which writes what an agent
  changed under ``/mnt/memory/<slug>`` as a ``session_actor``, inside a transaction of its own or
  through the async wrappers of the same names on :class:`MemoryStores`. They obey the same rules
  as the API (path and content rules, overlap conflicts, the cap, archived stores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from agenthost.errors import InvalidRequest, MemoryPathConflict, MemoryPreconditionFailed, NotFound
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us
from agenthost.schemas.memory import (
    MAX_MEMORIES,
    Actor,
    check_content,
    check_path,
    check_sha256,
    content_sha256,
    memory_json,
    memory_prefix_json,
    memory_store_json,
    memory_version_json,
)
from agenthost.store.db import Database
from agenthost.store.paging import Lock, Page, PageRequest, created_filter, fetch_page, locked
from agenthost.store.tables import memories, memory_stores, memory_versions

_BASIC_MEMORY = [c for c in memories.c if c.name != "content"]
_BASIC_VERSION = [c for c in memory_versions.c if c.name != "content"]


@dataclass(frozen=True)
class StoredMemory:
    """A memory as the engine mirrors it: its id, the SHA-256 of its content, and the content."""

    id: str
    content_sha256: str
    content: str


@dataclass(frozen=True)
class VersionFilters:
    """Filters of the version list; every one given must hold."""

    memory_id: str | None = None
    operation: str | None = None
    actors: tuple[Actor, ...] = ()
    created: dict[str, int] | None = None


# -- rows ------------------------------------------------------------------------------------------


def store_row(conn: sa.Connection, store_id: str, workspace_id: str | None = None, lock: Lock = None) -> Any:
    """A memory store's row (of ``workspace_id`` when given); 404 when unknown."""
    query = sa.select(memory_stores).where(memory_stores.c.id == store_id)
    if workspace_id is not None:
        query = query.where(memory_stores.c.workspace_id == workspace_id)
    row = conn.execute(locked(query, lock, memory_stores)).first()
    if row is None:
        raise NotFound(f"memory store {store_id!r} not found")
    return row


def _memory_row(conn: sa.Connection, store_id: str, memory_id: str, *, content: bool = True) -> Any:
    columns = list(memories.c) if content else _BASIC_MEMORY
    query = sa.select(*columns).where(memories.c.id == memory_id, memories.c.store_id == store_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"memory {memory_id!r} not found in memory store {store_id}")
    return row


def _by_path(conn: sa.Connection, store_id: str, path: str) -> Any:
    query = sa.select(memories).where(memories.c.store_id == store_id, memories.c.path == path)
    return conn.execute(query).first()


def _writable(store: Any) -> None:
    if store.archived_at is not None:
        raise InvalidRequest(
            f"memory store {store.id} is archived: its memories can be read and deleted, not created or changed"
        )


def _in_the_way(conn: sa.Connection, store_id: str, path: str, moving: str | None) -> Any:
    """The memory that holds ``path``, or one that is its ancestor or descendant (a file where a directory
    would be, or the reverse), leaving out the memory being renamed."""
    parts = path[1:].split("/")
    ancestors = ["/" + "/".join(parts[:n]) for n in range(1, len(parts))]
    below = sa.and_(memories.c.path >= path + "/", memories.c.path < path + "0")  # '0' follows '/'
    for where in (memories.c.path == path, memories.c.path.in_(ancestors), below):
        query = sa.select(memories.c.id, memories.c.path).where(memories.c.store_id == store_id, where)
        if moving is not None:
            query = query.where(memories.c.id != moving)
        row = conn.execute(query.order_by(memories.c.path).limit(1)).first()
        if row is not None:
            return row
    return None


def _check_free(conn: sa.Connection, store_id: str, path: str, moving: str | None = None) -> None:
    row = _in_the_way(conn, store_id, path, moving)
    if row is None:
        return
    if row.path == path:
        message = f"path: memory {row.id} already has the path {path!r}"
    else:
        message = f"path: {path!r} overlaps memory {row.id} at {row.path!r} (a path cannot be both file and directory)"
    raise MemoryPathConflict(message, conflicting_memory_id=row.id, conflicting_path=row.path)


def _expect(row: Any, expected: str | None, field: str) -> None:
    if expected is not None and row.content_sha256 != check_sha256(expected, field):
        raise MemoryPreconditionFailed(
            f"{field}: memory {row.id} has content_sha256 {row.content_sha256}, not {expected}; nothing was changed"
        )


def _version(
    conn: sa.Connection,
    store_id: str,
    memory_id: str,
    operation: str,
    path: str,
    data: bytes | None,
    actor: Actor,
    now: int,
) -> str:
    version_id = new_id("memver")
    conn.execute(
        memory_versions.insert().values(
            id=version_id,
            store_id=store_id,
            memory_id=memory_id,
            operation=operation,
            path=path,
            content=data,
            content_sha256=None if data is None else content_sha256(data),
            content_size_bytes=None if data is None else len(data),
            actor_type=actor.type,
            actor_id=actor.id,
            created_at=now,
        )
    )
    return version_id


# -- writes (one store's row is locked by the caller) ----------------------------------------------


def _create(conn: sa.Connection, store: Any, path: str, data: bytes, actor: Actor) -> Any:
    _writable(store)
    _check_free(conn, store.id, path)
    count = sa.select(sa.func.count()).select_from(memories).where(memories.c.store_id == store.id)
    if conn.execute(count).scalar_one() >= MAX_MEMORIES:
        raise InvalidRequest(
            f"memory store {store.id} holds the maximum of {MAX_MEMORIES} memories; delete some before creating more"
        )
    memory_id, now = new_id("mem"), now_us()
    version_id = _version(conn, store.id, memory_id, "created", path, data, actor, now)
    values = {
        "id": memory_id,
        "store_id": store.id,
        "path": path,
        "content": data,
        "content_sha256": content_sha256(data),
        "content_size_bytes": len(data),
        "version_id": version_id,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(memories.insert().values(**values))
    return SimpleNamespace(**values)


def _modify(conn: sa.Connection, store: Any, row: Any, data: bytes | None, path: str | None, actor: Actor) -> Any:
    """Change a memory's content and/or path; an update that changes nothing writes no version."""
    _writable(store)
    new_path = row.path if path is None else path
    new_data = row.content if data is None else data
    if new_path == row.path and new_data == row.content:
        return row
    if new_path != row.path:
        _check_free(conn, store.id, new_path, moving=row.id)
    now = now_us()
    version_id = _version(conn, store.id, row.id, "modified", new_path, new_data, actor, now)
    values = {
        "path": new_path,
        "content": new_data,
        "content_sha256": content_sha256(new_data),
        "content_size_bytes": len(new_data),
        "version_id": version_id,
        "updated_at": now,
    }
    conn.execute(memories.update().where(memories.c.id == row.id).values(**values))
    return SimpleNamespace(**{**row._asdict(), **values})


def _delete(conn: sa.Connection, row: Any, actor: Actor) -> None:
    _version(conn, row.store_id, row.id, "deleted", row.path, None, actor, now_us())
    conn.execute(memories.delete().where(memories.c.id == row.id))


# -- for the engine --------------------------------------------------------------------------------


def write_memory(
    conn: sa.Connection, store_id: str, path: str, content: str, actor: Actor, *, expected_sha256: str | None = None
) -> JSON:
    """Create the memory at ``path`` or replace its content, in the caller's transaction.

    Returns the wire Memory (basic view: no content). Writing the content a memory already has
    changes nothing and adds no version. ``expected_sha256``, when given, must be the current
    memory's ``content_sha256`` (409 ``memory_precondition_failed_error`` otherwise, also when
    there is no memory at ``path``). Raises like the API: 400 for a bad path or content, an
    archived store or a full store (on create); 409 ``memory_path_conflict_error`` when ``path``
    overlaps another memory; 404 for an unknown store.
    """
    check_path(path)
    data = check_content(content)
    store = store_row(conn, store_id, lock="update")
    row = _by_path(conn, store_id, path)
    if row is None:
        if expected_sha256 is not None:
            check_sha256(expected_sha256, "expected_sha256")
            raise MemoryPreconditionFailed(f"expected_sha256: there is no memory at {path!r}; nothing was changed")
        return memory_json(_create(conn, store, path, data, actor), full=False)
    _expect(row, expected_sha256, "expected_sha256")
    return memory_json(_modify(conn, store, row, data, None, actor), full=False)


def delete_memory_by_path(
    conn: sa.Connection, store_id: str, path: str, actor: Actor, *, expected_sha256: str | None = None
) -> str | None:
    """Delete the memory at ``path`` in the caller's transaction; its id, or None when there was none.

    Deleting writes a ``deleted`` version and works in archived stores too. ``expected_sha256``
    as in :func:`write_memory` (a missing memory is not a mismatch: there is nothing to delete).
    """
    store_row(conn, store_id, lock="update")
    row = _by_path(conn, store_id, path)
    if row is None:
        return None
    _expect(row, expected_sha256, "expected_sha256")
    _delete(conn, row, actor)
    return str(row.id)


def list_all(conn: sa.Connection, store_id: str) -> dict[str, StoredMemory]:
    """Every memory of a store as ``{path: StoredMemory}`` (at most 2,000, each at most 100 KB)."""
    store_row(conn, store_id)
    query = sa.select(memories.c.id, memories.c.path, memories.c.content_sha256, memories.c.content).where(
        memories.c.store_id == store_id
    )
    return {
        row.path: StoredMemory(row.id, row.content_sha256, row.content.decode("utf-8")) for row in conn.execute(query)
    }


def digests(conn: sa.Connection, store_id: str) -> dict[str, str]:
    """``{path: content_sha256}`` of every memory of a store, without reading any content."""
    query = sa.select(memories.c.path, memories.c.content_sha256).where(memories.c.store_id == store_id)
    return {row.path: row.content_sha256 for row in conn.execute(query)}


def contents(conn: sa.Connection, store_id: str, paths: list[str]) -> dict[str, bytes]:
    """``{path: content}`` of the memories at ``paths`` that exist."""
    found: dict[str, bytes] = {}
    for start in range(0, len(paths), 500):
        query = sa.select(memories.c.path, memories.c.content).where(
            memories.c.store_id == store_id, memories.c.path.in_(paths[start : start + 500])
        )
        found |= {row.path: bytes(row.content) for row in conn.execute(query)}
    return found


# -- listings --------------------------------------------------------------------------------------


def _after(key: str) -> sa.ColumnElement[bool]:
    """Where a memory listing continues: after a memory's path, or after everything below a prefix."""
    if key.endswith("/"):  # a memory_prefix item; no memory path ends in '/'
        return memories.c.path >= key[:-1] + "0"
    return memories.c.path > key


def _list_memories(conn: sa.Connection, store_id: str, prefix: str, depth: int, page: PageRequest, full: bool) -> Page:
    """One page of memories below ``prefix`` in path order; with ``depth=1`` deeper ones become prefixes."""
    query = sa.select(*_BASIC_MEMORY).where(
        memories.c.store_id == store_id, memories.c.path >= prefix, memories.c.path < prefix[:-1] + "0"
    )
    if page.after is not None:
        query = query.where(_after(page.after))
    query = query.order_by(memories.c.path)
    if depth == 0:
        query = query.limit(page.limit + 1)
    items: list[tuple[str, Any]] = []  # (key, row or None for a prefix)
    for row in conn.execute(query):
        rest = row.path[len(prefix) :]
        if depth == 1 and "/" in rest:
            key = prefix + rest.split("/", 1)[0] + "/"
            if items and items[-1][0] == key:
                continue
            items.append((key, None))
        else:
            items.append((row.path, row))
        if len(items) > page.limit:
            break
    more = len(items) > page.limit
    items = items[: page.limit]
    contents: dict[str, bytes] = {}
    if full:
        ids = [row.id for _, row in items if row is not None]
        found = conn.execute(sa.select(memories.c.id, memories.c.content).where(memories.c.id.in_(ids)))
        contents = {r.id: r.content for r in found}
    rendered = [
        memory_prefix_json(key)
        if row is None
        else memory_json(SimpleNamespace(**row._asdict(), content=contents.get(row.id, b"")), full)
        for key, row in items
    ]
    return Page(rendered, next_key=items[-1][0] if more else None)


# -- the API ---------------------------------------------------------------------------------------


class MemoryStores:
    """Memory stores of every workspace, their memories and versions."""

    def __init__(self, db: Database):
        self.db = db

    # stores

    async def create(self, workspace_id: str, fields: JSON) -> JSON:
        now = now_us()
        values = {"id": new_id("memstore"), "workspace_id": workspace_id, **fields, "created_at": now}
        values |= {"updated_at": now, "archived_at": None}
        await self.db.run_write(lambda conn: conn.execute(memory_stores.insert().values(**values)))
        return memory_store_json(SimpleNamespace(**values))

    async def get(self, workspace_id: str, store_id: str) -> JSON:
        return await self.db.run_read(lambda conn: memory_store_json(store_row(conn, store_id, workspace_id)))

    async def list(
        self, workspace_id: str, page: PageRequest, *, include_archived: bool, created: dict[str, int]
    ) -> Page:
        query = sa.select(memory_stores).where(memory_stores.c.workspace_id == workspace_id)
        if not include_archived:
            query = query.where(memory_stores.c.archived_at.is_(None))
        query = created_filter(query, memory_stores.c.created_at, created)
        return await self.db.run_read(
            lambda conn: fetch_page(conn, query, memory_stores.c.id, page, memory_store_json, lambda r: r.id)
        )

    async def update(self, workspace_id: str, store_id: str, change: Callable[[JSON], JSON]) -> JSON:
        """Apply ``change`` to ``{name, description, metadata}``; 400 on an archived store."""

        def write(conn: sa.Connection) -> JSON:
            row = store_row(conn, store_id, workspace_id, lock="update")
            if row.archived_at is not None:
                raise InvalidRequest(f"memory store {store_id} is archived and cannot be updated")
            current = {"name": row.name, "description": row.description, "metadata": row.metadata}
            fields = change(current)
            if fields == current:
                return memory_store_json(row)
            now = now_us()
            conn.execute(memory_stores.update().where(memory_stores.c.id == store_id).values(**fields, updated_at=now))
            return memory_store_json(SimpleNamespace(**{**row._asdict(), **fields, "updated_at": now}))

        return await self.db.run_write(write)

    async def archive(self, workspace_id: str, store_id: str) -> JSON:
        """Archive a store (one way); archiving an archived store returns it unchanged."""

        def write(conn: sa.Connection) -> JSON:
            row = store_row(conn, store_id, workspace_id, lock="update")
            if row.archived_at is None:
                now = now_us()
                change = memory_stores.update().where(memory_stores.c.id == store_id)
                conn.execute(change.values(archived_at=now, updated_at=now))
                row = store_row(conn, store_id)
            return memory_store_json(row)

        return await self.db.run_write(write)

    async def delete(self, workspace_id: str, store_id: str) -> None:
        """Delete a store with its memories and every version."""

        def write(conn: sa.Connection) -> None:
            store_row(conn, store_id, workspace_id, lock="update")
            conn.execute(memory_versions.delete().where(memory_versions.c.store_id == store_id))
            conn.execute(memories.delete().where(memories.c.store_id == store_id))
            conn.execute(memory_stores.delete().where(memory_stores.c.id == store_id))

        await self.db.run_write(write)

    # memories

    async def create_memory(
        self, workspace_id: str, store_id: str, path: str, content: str | None, actor: Actor, *, full: bool
    ) -> JSON:
        check_path(path)
        data = check_content(content)

        def write(conn: sa.Connection) -> JSON:
            store = store_row(conn, store_id, workspace_id, lock="update")
            return memory_json(_create(conn, store, path, data, actor), full)

        return await self.db.run_write(write)

    async def list_memories(
        self, workspace_id: str, store_id: str, page: PageRequest, *, prefix: str, depth: int, full: bool
    ) -> Page:
        def read(conn: sa.Connection) -> Page:
            store_row(conn, store_id, workspace_id)
            return _list_memories(conn, store_id, prefix, depth, page, full)

        return await self.db.run_read(read)

    async def get_memory(self, workspace_id: str, store_id: str, memory_id: str, *, full: bool) -> JSON:
        def read(conn: sa.Connection) -> JSON:
            store_row(conn, store_id, workspace_id)
            return memory_json(_memory_row(conn, store_id, memory_id, content=full), full)

        return await self.db.run_read(read)

    async def update_memory(
        self,
        workspace_id: str,
        store_id: str,
        memory_id: str,
        actor: Actor,
        *,
        content: str | None,
        path: str | None,
        expected_sha256: str | None,
        full: bool,
    ) -> JSON:
        """Change content and/or path (None keeps it); ``expected_sha256`` is the body's precondition."""
        data = None if content is None else check_content(content)
        if path is not None:
            check_path(path)

        def write(conn: sa.Connection) -> JSON:
            store = store_row(conn, store_id, workspace_id, lock="update")
            row = _memory_row(conn, store_id, memory_id)
            _writable(store)
            _expect(row, expected_sha256, "precondition.content_sha256")
            return memory_json(_modify(conn, store, row, data, path, actor), full)

        return await self.db.run_write(write)

    async def delete_memory(
        self, workspace_id: str, store_id: str, memory_id: str, actor: Actor, *, expected_sha256: str | None
    ) -> None:
        def write(conn: sa.Connection) -> None:
            store_row(conn, store_id, workspace_id, lock="update")
            row = _memory_row(conn, store_id, memory_id)
            _expect(row, expected_sha256, "expected_content_sha256")
            _delete(conn, row, actor)

        await self.db.run_write(write)

    # versions

    async def list_versions(
        self, workspace_id: str, store_id: str, page: PageRequest, filters: VersionFilters, *, full: bool
    ) -> Page:
        query = sa.select(*(memory_versions.c if full else _BASIC_VERSION)).where(
            memory_versions.c.store_id == store_id
        )
        if filters.memory_id is not None:
            query = query.where(memory_versions.c.memory_id == filters.memory_id)
        if filters.operation is not None:
            query = query.where(memory_versions.c.operation == filters.operation)
        for actor in filters.actors:
            query = query.where(memory_versions.c.actor_type == actor.type, memory_versions.c.actor_id == actor.id)
        query = created_filter(query, memory_versions.c.created_at, filters.created or {})

        def read(conn: sa.Connection) -> Page:
            store_row(conn, store_id, workspace_id)
            return fetch_page(
                conn, query, memory_versions.c.id, page, lambda r: memory_version_json(r, full), lambda r: r.id
            )

        return await self.db.run_read(read)

    async def get_version(self, workspace_id: str, store_id: str, version_id: str, *, full: bool) -> JSON:
        def read(conn: sa.Connection) -> JSON:
            store_row(conn, store_id, workspace_id)
            return memory_version_json(_version_row(conn, store_id, version_id), full)

        return await self.db.run_read(read)

    async def redact_version(self, workspace_id: str, store_id: str, version_id: str, actor: Actor) -> JSON:
        """Clear a version's content, hash, size and path; redacting it again returns it unchanged."""

        def write(conn: sa.Connection) -> JSON:
            store_row(conn, store_id, workspace_id, lock="update")
            row = _version_row(conn, store_id, version_id)
            if row.redacted_at is not None:
                return memory_version_json(row, full=True)
            head = sa.select(memories.c.id).where(memories.c.id == row.memory_id, memories.c.version_id == row.id)
            if conn.execute(head).first() is not None:
                raise InvalidRequest(
                    f"memory version {version_id} holds the current content of memory {row.memory_id} and cannot "
                    "be redacted; write new content to the memory (or delete it) first"
                )
            cleared = {"path": None, "content": None, "content_sha256": None, "content_size_bytes": None}
            redaction = {"redacted_at": now_us(), "redactor_type": actor.type, "redactor_id": actor.id}
            change = memory_versions.update().where(memory_versions.c.id == version_id)
            conn.execute(change.values(**cleared, **redaction))
            return memory_version_json(SimpleNamespace(**{**row._asdict(), **cleared, **redaction}), full=True)

        return await self.db.run_write(write)

    # the engine's calls, each in its own transaction

    async def write_memory(
        self, store_id: str, path: str, content: str, actor: Actor, *, expected_sha256: str | None = None
    ) -> JSON:
        """:func:`write_memory` in a transaction of its own."""
        return await self.db.run_write(
            lambda conn: write_memory(conn, store_id, path, content, actor, expected_sha256=expected_sha256)
        )

    async def delete_memory_by_path(
        self, store_id: str, path: str, actor: Actor, *, expected_sha256: str | None = None
    ) -> str | None:
        """:func:`delete_memory_by_path` in a transaction of its own."""
        return await self.db.run_write(
            lambda conn: delete_memory_by_path(conn, store_id, path, actor, expected_sha256=expected_sha256)
        )

    async def list_all(self, store_id: str) -> dict[str, StoredMemory]:
        """:func:`list_all` in a read of its own."""
        return await self.db.run_read(lambda conn: list_all(conn, store_id))


def _version_row(conn: sa.Connection, store_id: str, version_id: str) -> Any:
    query = sa.select(memory_versions).where(memory_versions.c.id == version_id, memory_versions.c.store_id == store_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"memory version {version_id!r} not found in memory store {store_id}")
    return row
