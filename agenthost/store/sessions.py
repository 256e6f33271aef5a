"""Sessions and their event log (layer 1).

Each session row carries ``last_seq``; appending events bumps it and inserts the events with the
allocated numbers in the same transaction, so the per-session sequence never has gaps or duplicates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa

from agenthost.errors import Conflict, InDoubt, InvalidRequest, NotFound, NotSupported
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.schemas.events import event_json
from agenthost.schemas.memory import memory_slug
from agenthost.schemas.resources import (
    MAX_MEMORY_STORES,
    FileResourceParam,
    MemoryStoreResourceParam,
    ResourceParam,
    check_mounts,
    file_resource_json,
    memory_resource_json,
    mount_path,
    repository_json,
    repository_mount_path,
    repository_name,
)
from agenthost.schemas.sessions import empty_usage, session_json
from agenthost.store.agents import agent_for_session
from agenthost.store.db import Database
from agenthost.store.environments import environment_row
from agenthost.store.files import Files, delete_session_files, insert_copies
from agenthost.store.memory import store_row as memory_store_row
from agenthost.store.notifications import announce
from agenthost.store.notify import Bus, Shown, emissions_after
from agenthost.store.paging import Lock, Page, PageRequest, created_filter, fetch_page, locked
from agenthost.store.repositories import delete_tokens, insert_tokens, seal_token
from agenthost.store.secrets import Sealer
from agenthost.store.tables import events, sessions
from agenthost.store.vaults import check_vaults
from agenthost.store.work import enqueue


def _render(row: Any, now: int | None = None) -> JSON:
    end = row.updated_at if row.status == "terminated" else (now or now_us())
    return session_json(
        session_id=row.id,
        status=row.status,
        title=row.title,
        agent=row.agent,
        environment_id=row.environment_id,
        metadata=row.metadata,
        resources=row.resources,
        vault_ids=row.vault_ids,
        usage=row.usage,
        active_seconds=row.active_us / 1_000_000,
        duration_seconds=max(0, end - row.created_at) / 1_000_000,
        deployment_id=row.deployment_id,
        created_at=ts(row.created_at),
        updated_at=ts(row.updated_at),
        archived_at=ts(row.archived_at),
    )


_BY_ID = sa.select(sessions).where(
    sessions.c.id == sa.bindparam("id"), sessions.c.workspace_id == sa.bindparam("workspace_id")
)


_BY_ID_LOCKED = {lock: locked(_BY_ID, lock, sessions) for lock in (None, "update", "share")}

PROCESSED_ORDER = sa.func.coalesce(events.c.processed_at, events.c.created_at)
"""Events sort by when they were processed, queued ones by when they were sent. Taking a queued event
moves it forward in time only, so a cursor or a Last-Event-ID position never skips an event (at most
an event is seen again, by id, after it moved)."""


def _render_event(row: Any) -> JSON:
    return event_json(row.id, row.payload, ts(row.processed_at))


Logged = Shown
"""An event as shown to subscribers: its emission number in the session and its wire form.

Appending an event shows it once; taking a queued event shows it again with its ``processed_at``.
Each showing gets the session's next emission number, in the transaction that
makes it, and the session row's lock orders those transactions: numbers commit in order, without
gaps, so a process that saw up to ``n`` catches up by reading the log's showings after ``n``."""


# The statements of every turn are built once, with bound parameters: building one per call, and
# SQLAlchemy's cache key for it, cost more than running it (docs/benchmarks.md, "Turns").
_ALLOCATE = (
    sessions.update()
    .where(sessions.c.id == sa.bindparam("sid"))
    .values(
        last_seq=sessions.c.last_seq + sa.bindparam("n_seq", type_=sa.Integer),
        last_emit=sessions.c.last_emit + sa.bindparam("n_emit", type_=sa.BigInteger),
    )
    .returning(sessions.c.last_seq, sessions.c.last_emit)
)


_INSERT = events.insert()


@functools.cache
def _changing(columns: tuple[str, ...]) -> sa.Update:
    """``UPDATE sessions`` of these columns and ``updated_at``, built once per set of columns."""
    values = {name: sa.bindparam(f"v_{name}", type_=sessions.c[name].type) for name in (*columns, "updated_at")}
    return sessions.update().where(sessions.c.id == sa.bindparam("sid")).values(values)


def _allocate(conn: sa.Connection, session_id: str, events_: int, emissions: int) -> tuple[int, int]:
    """Reserve ``events_`` sequence numbers and ``emissions`` emission numbers; return the first of each."""
    row = conn.execute(_ALLOCATE, {"sid": session_id, "n_seq": events_, "n_emit": emissions}).one()
    return row.last_seq - events_ + 1, row.last_emit - emissions + 1


def append_events(
    conn: sa.Connection,
    session_id: str,
    payloads: Sequence[JSON],
    *,
    processed: bool,
    now: int,
    ids: Sequence[str | None] = (),
) -> list[Logged]:
    """Append events to a session's log inside the caller's transaction; return them with their emission.

    ``ids`` gives some events the id they were announced with (a live preview's); the rest get new ones.
    """
    if not payloads:
        return []
    first_seq, first_emit = _allocate(conn, session_id, len(payloads), len(payloads))
    processed_at = now if processed else None
    given = list(ids) + [None] * (len(payloads) - len(ids))
    rows = [
        {
            "session_id": session_id,
            "seq": first_seq + index,
            "id": given[index] or new_id("sevt"),
            "type": payload["type"],
            "payload": payload,
            "processed_at": processed_at,
            "created_at": now,
            "emit_first": first_emit + index,
            "emit_last": first_emit + index,
        }
        for index, payload in enumerate(payloads)
    ]
    conn.execute(_INSERT, rows)
    announce(conn, "e", session_id, first_emit + len(rows) - 1)
    return [(r["emit_last"], event_json(r["id"], r["payload"], ts(processed_at))) for r in rows]


_TAKE = (
    events.update()
    .where(events.c.session_id == sa.bindparam("sid"), events.c.seq == sa.bindparam("taken_seq"))
    .values(processed_at=sa.bindparam("at"), flushed=sa.bindparam("drop"), emit_last=sa.bindparam("emission"))
)


def take_queued(
    conn: sa.Connection,
    session_id: str,
    now: int,
    published: list[Logged],
    types: tuple[str, ...] | None = None,
    *,
    flush: bool = False,
) -> list[JSON]:
    """Mark queued user events processed and show them again with their timestamp.

    ``types`` limits which kinds are taken (an interrupt takes only interrupts: messages queued
    behind it become the next turn). ``flush`` drops them: processed, but never shown to the model
    (when a turn ends with its model retries exhausted).
    """
    rows = conn.execute(_QUEUED[types is not None], {"sid": session_id, "types": list(types or ())}).all()
    if not rows:
        return []
    _, first_emit = _allocate(conn, session_id, 0, len(rows))
    conn.execute(
        _TAKE,
        [
            {"sid": session_id, "taken_seq": r.seq, "at": now, "drop": flush, "emission": first_emit + index}
            for index, r in enumerate(rows)
        ],
    )
    announce(conn, "e", session_id, first_emit + len(rows) - 1)
    taken = [event_json(r.id, r.payload, ts(now)) for r in rows]
    published.extend((first_emit + index, event) for index, event in enumerate(taken))
    return taken


def has_queued(conn: sa.Connection, session_id: str, types: tuple[str, ...] | None = None) -> bool:
    query = _ANY_QUEUED[types is not None]
    return conn.execute(query, {"sid": session_id, "types": list(types or ())}).first() is not None


def _queued(*columns: Any) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """A select of the session's queued events: of any type, and of the types bound as ``types``."""
    query = sa.select(*columns).where(events.c.session_id == sa.bindparam("sid"), events.c.processed_at.is_(None))
    return query, query.where(events.c.type.in_(sa.bindparam("types", expanding=True)))


_QUEUED = tuple(q.order_by(events.c.seq) for q in _queued(events.c.seq, events.c.id, events.c.payload))
_ANY_QUEUED = tuple(q.limit(1) for q in _queued(events.c.seq))


def refuse_on_worker(index: int | None) -> None:
    """Resources are mounted by the server's sandboxes; a self-hosted worker's machine gets none of them."""
    field = "resources" if index is None else f"resources[{index}]"
    raise NotSupported(field, "files and memory stores in self-hosted environments (their workers run the tools)")


def attach_stores(conn: sa.Connection, workspace_id: str, stores: dict[int, MemoryStoreResourceParam]) -> list[JSON]:
    """The memory-store resources of a new session, each store checked (it exists here, is not archived)."""
    if len(stores) > MAX_MEMORY_STORES:
        raise InvalidRequest(f"resources: a session takes at most {MAX_MEMORY_STORES} memory stores")
    attached: list[JSON] = []
    slugs: set[str] = set()
    for index, param in stores.items():
        field = f"resources[{index}].memory_store_id"
        try:
            store = memory_store_row(conn, param.memory_store_id, workspace_id, lock="share")
        except NotFound as exc:
            raise NotFound(f"{field}: {exc.message}") from None
        if store.archived_at is not None:
            raise InvalidRequest(f"{field}: memory store {store.id} is archived; it cannot be attached")
        if any(r["memory_store_id"] == store.id for r in attached):
            raise InvalidRequest(f"{field}: memory store {store.id} is attached twice")
        slug, base, number = memory_slug(store.name), memory_slug(store.name), 1
        while slug in slugs:  # two stores whose names make the same directory
            number += 1
            slug = f"{base}-{number}"
        slugs.add(slug)
        attached.append(memory_resource_json(param, store.name, store.description, slug))
    return attached


def session_row(conn: sa.Connection, workspace_id: str, session_id: str, lock: Lock = None) -> Any:
    """A session's row inside a caller's transaction; 404 when unknown here."""
    row = conn.execute(_BY_ID_LOCKED[lock], {"id": session_id, "workspace_id": workspace_id}).first()
    if row is None:
        raise NotFound(f"session {session_id!r} not found")
    return row


class Sessions:
    """Session CRUD and the read side of the event log, scoped to a workspace."""

    def __init__(self, db: Database, bus: Bus, files: Files, sealer: Sealer | None = None):
        self.db = db
        self.bus = bus
        self.files = files
        self.sealer = sealer

    async def create(
        self,
        workspace_id: str,
        *,
        agent_id: str,
        agent_version: int | None,
        build_agent: Callable[[JSON], JSON],
        environment_id: str,
        title: str | None,
        metadata: dict[str, str],
        initial_events: list[JSON],
        resources: Sequence[ResourceParam] = (),
        vault_ids: Sequence[str] = (),
    ) -> JSON:
        """Create a session from an agent version and an environment, with its initial events, atomically.

        Attached files are copied first (the session owns its copies); the copies' rows are written
        with the session, and their bytes removed again when that fails. Repository tokens are
        sealed and written apart from the resources the API returns (store/repositories.py). Memory
        stores are checked and described in the session's transaction (their name and description as
        of now).
        """
        session_id, now = new_id("sesn"), now_us()
        stores = {i: r for i, r in enumerate(resources) if isinstance(r, MemoryStoreResourceParam)}
        sources = {
            f"resources[{index}].file_id": r.file_id
            for index, r in enumerate(resources)
            if isinstance(r, FileResourceParam)
        }
        copies = await self.files.copy_for_session(workspace_id, sources) if sources else {}
        copy_ids = [copy_id for copy_id, _ in copies.values()]
        try:
            attached, sealed = self._attach(resources, copies, now)
            check_mounts(attached, "resources")
        except InvalidRequest:
            await self.files.forget(copy_ids)
            raise

        def write(conn: sa.Connection) -> tuple[JSON, list[Logged]]:
            try:
                agent = agent_for_session(conn, workspace_id, agent_id, agent_version)
            except NotFound as exc:
                raise NotFound(f"agent: {exc.message}") from None
            if agent["archived_at"] is not None:
                raise InvalidRequest(f"agent: agent {agent_id} is archived; new sessions cannot use it")
            try:
                env = environment_row(conn, workspace_id, environment_id, lock="share")
            except NotFound:
                raise NotFound(
                    f"environment_id: environment {environment_id!r} not found", error_code="environment_not_found"
                ) from None
            if env.archived_at is not None:
                raise InvalidRequest(
                    f"environment_id: environment {environment_id} is archived; new sessions cannot use it",
                    error_code="environment_archived",
                )
            if resources and env.fields["config"]["type"] == "self_hosted":
                refuse_on_worker(0)
            values = {
                "id": session_id,
                "workspace_id": workspace_id,
                "agent_id": agent["id"],
                "agent_version": agent["version"],
                "environment_id": environment_id,
                # Initial events make the session born running, with work pending.
                "status": "running" if initial_events else "idle",
                "pending": bool(initial_events),
                "blocked_on": None,
                "running_since": None,
                "title": title,
                "metadata": metadata,
                "agent": build_agent(agent),
                "resources": [*attached, *attach_stores(conn, workspace_id, stores)],
                "vault_ids": list(vault_ids),
                "usage": empty_usage(),
                "active_us": 0,
                "last_seq": 0,
                "last_emit": 0,
                "deployment_id": None,
                "created_at": now,
                "updated_at": now,
                "archived_at": None,
            }
            check_vaults(conn, workspace_id, list(vault_ids))
            conn.execute(sessions.insert().values(**values))
            insert_copies(conn, workspace_id, session_id, copies, now)
            insert_tokens(conn, session_id, sealed, now)
            logged = append_events(conn, session_id, initial_events, processed=False, now=now)
            if initial_events:
                announce(conn, "w", session_id)
            if env.fields["config"]["type"] == "self_hosted":  # its worker learns of the session from the queue
                enqueue(conn, workspace_id, environment_id, session_id, now)
            return _render(SimpleNamespace(**values), now), logged

        try:
            session, logged = await self.db.run_write(write)
        except InDoubt:  # the session may exist with these copies; the purge removes them if it does not
            raise
        except BaseException:
            await self.files.forget(copy_ids)
            raise
        self.bus.publish(session_id, logged)
        return session

    def _attach(
        self, resources: Sequence[ResourceParam], copies: dict[str, tuple[str, str]], now: int
    ) -> tuple[list[JSON], dict[str, str | None]]:
        """The resources' wire objects, and each repository resource's sealed token by resource id."""
        attached: list[JSON] = []
        sealed: dict[str, str | None] = {}
        for index, r in enumerate(resources):
            field, resource_id = f"resources[{index}]", new_id("sesrsc")
            if isinstance(r, MemoryStoreResourceParam):
                continue  # attached in the session's transaction (attach_stores)
            if isinstance(r, FileResourceParam):
                path = mount_path(r.file_id, r.mount_path, f"{field}.mount_path")
                attached.append(file_resource_json(resource_id, copies[f"{field}.file_id"][0], path, ts(now), ts(now)))
                continue
            _, repo = repository_name(r.url, f"{field}.url")
            path = repository_mount_path(repo, r.mount_path, f"{field}.mount_path")
            checkout = r.checkout.model_dump() if r.checkout is not None else None
            attached.append(repository_json(resource_id, r.url, path, checkout, ts(now), ts(now)))
            sealed[resource_id] = seal_token(self.sealer, r.authorization_token, f"{field}.authorization_token")
        return attached, sealed

    async def environment_of(self, workspace_id: str, session_id: str) -> str:
        """The environment a session runs in; 404 when unknown here."""
        return await self.db.run_read(lambda conn: str(session_row(conn, workspace_id, session_id).environment_id))

    async def get(self, workspace_id: str, session_id: str) -> JSON:
        return await self.db.run_read(lambda conn: _render(session_row(conn, workspace_id, session_id)))

    async def list(
        self,
        workspace_id: str,
        page: PageRequest,
        *,
        agent_id: str | None,
        agent_version: int | None,
        deployment_id: str | None,
        memory_store_id: str | None,
        statuses: list[str],
        include_archived: bool,
        created: dict[str, int],
    ) -> Page:
        query = sa.select(sessions).where(sessions.c.workspace_id == workspace_id)
        if agent_id is not None:
            query = query.where(sessions.c.agent_id == agent_id)
            if agent_version is not None:
                query = query.where(sessions.c.agent_version == agent_version)
        if deployment_id is not None:
            query = query.where(sessions.c.deployment_id == deployment_id)
        if memory_store_id is not None:
            # Resources are JSON written by orjson (no spaces) on both databases.
            quoted = orjson.dumps(memory_store_id).decode()
            escaped = quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            needle = f'%"memory_store_id":{escaped}%'
            query = query.where(sa.cast(sessions.c.resources, sa.Text).like(needle, escape="\\"))
        if statuses:
            query = query.where(sessions.c.status.in_(statuses))
        if not include_archived:
            query = query.where(sessions.c.archived_at.is_(None))
        query = created_filter(query, sessions.c.created_at, created)
        now = now_us()
        return await self.db.run_read(
            lambda conn: fetch_page(conn, query, sessions.c.id, page, lambda r: _render(r, now), lambda r: r.id)
        )

    async def update(self, workspace_id: str, session_id: str, change: Callable[[Any], JSON]) -> JSON:
        """Apply ``change`` (row -> changed wire fields); store them and log ``session.updated`` if any."""

        def write(conn: sa.Connection) -> tuple[Any, list[Logged]]:
            row = session_row(conn, workspace_id, session_id, lock="update")
            if row.archived_at is not None:
                raise Conflict(f"session {session_id} is archived and cannot be changed")
            changed = change(row)
            logged: list[Logged] = []
            if changed:
                now = now_us()
                conn.execute(
                    _changing(tuple(sorted(changed))),
                    {"sid": session_id, "v_updated_at": now} | {f"v_{name}": value for name, value in changed.items()},
                )
                updated = {"type": "session.updated", **changed}
                logged = append_events(conn, session_id, [updated], processed=True, now=now)
                # What the answer renders, without reading the row back (its counters are stale, unrendered).
                row = SimpleNamespace(**row._asdict() | changed | {"updated_at": now})
            return row, logged

        row, logged = await self.db.run_write(write)
        self.bus.publish(session_id, logged)  # before the answer is rendered: the streams are told first
        return _render(row)

    async def archive(self, workspace_id: str, session_id: str) -> JSON:
        """Archive: read-only from now on, status terminated, history kept."""

        def write(conn: sa.Connection) -> tuple[JSON, list[Logged]]:
            row = session_row(conn, workspace_id, session_id, lock="update")
            logged: list[Logged] = []
            if row.archived_at is None:
                _refuse_running(row, "archived")
                now = now_us()
                conn.execute(
                    sessions.update()
                    .where(sessions.c.id == session_id)
                    .values(archived_at=now, status="terminated", updated_at=now, pending=False)
                )
                if row.status != "terminated":
                    terminated = [{"type": "session.status_terminated"}]
                    logged = append_events(conn, session_id, terminated, processed=True, now=now)
                row = session_row(conn, workspace_id, session_id)
            return _render(row), logged

        session, logged = await self.db.run_write(write)
        self.bus.publish(session_id, logged)
        return session

    async def delete(self, workspace_id: str, session_id: str) -> None:
        """Delete a session and its whole event log; open streams get ``session.deleted`` and end."""

        def write(conn: sa.Connection) -> list[str]:
            row = session_row(conn, workspace_id, session_id, lock="update")
            _refuse_running(row, "deleted")
            conn.execute(events.delete().where(events.c.session_id == session_id))
            delete_tokens(conn, session_id)
            conn.execute(sessions.delete().where(sessions.c.id == session_id))
            announce(conn, "d", session_id)
            return delete_session_files(conn, session_id)

        owned = await self.db.run_write(write)
        await self.files.forget(owned)
        self.bus.deleted(session_id)  # session.deleted (never persisted) ends every open stream

    async def events_after(self, workspace_id: str, session_id: str, event_id: str) -> tuple[int, list[Logged]]:
        """Every showing after ``event_id``'s first one (``Last-Event-ID`` resume); 400 when it is not in this log.

        An id names an event, not one of its showings: after a queued event was taken, resuming from
        its id replays from its queued showing, so nothing is skipped (events shown between its two
        showings may be seen again). Returns the number the replay starts after, and the showings.
        """

        def read(conn: sa.Connection) -> tuple[int, list[Logged]]:
            session_row(conn, workspace_id, session_id)
            found = conn.execute(
                sa.select(events.c.emit_first).where(events.c.session_id == session_id, events.c.id == event_id)
            ).first()
            if found is None:
                raise InvalidRequest(f"Last-Event-ID: {event_id!r} is not an event of this session")
            shown: list[Logged] = []
            watermark = found.emit_first
            while batch := emissions_after(conn, session_id, watermark):
                shown += batch
                watermark = batch[-1][0]
            return found.emit_first, shown

        return await self.db.run_read(read)

    async def events(
        self, workspace_id: str, session_id: str, page: PageRequest, *, types: list[str], created: dict[str, int]
    ) -> Page:
        """A page of the session's persisted events in processing order (by ``processed_at``).

        Queued events (no ``processed_at`` yet) sit at the time they were sent; when the engine takes
        one it moves to the time it was processed, where it now belongs.
        """
        query = sa.select(events, PROCESSED_ORDER.label("order_key")).where(events.c.session_id == session_id)
        if types:
            query = query.where(events.c.type.in_(types))
        query = created_filter(query, events.c.processed_at, created)

        def read(conn: sa.Connection) -> Page:
            session_row(conn, workspace_id, session_id)
            return fetch_page(
                conn, query, (PROCESSED_ORDER, events.c.seq), page, _render_event, lambda r: [r.order_key, r.seq]
            )

        return await self.db.run_read(read)


def _refuse_running(row: Any, verb: str) -> None:
    if row.status in ("running", "rescheduling"):
        raise InvalidRequest(
            f"session {row.id} is {row.status} and cannot be {verb}; send user.interrupt and wait for "
            "session.status_idle first"
        )
