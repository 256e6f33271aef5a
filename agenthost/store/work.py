"""Work items of self-hosted environments (layer 1).

A session in a ``self_hosted`` environment has its tools run by the operator's own worker.
The worker learns about the session through a work item: queued when the session is made
(and again when a session with no live item gets new input), handed out by ``poll``, taken
with ``ack`` (``starting``), kept with ``heartbeat`` (``active``; a compare-and-set on the last
heartbeat string, so two workers never both hold it), ended with ``stop``. An item whose
lease ran out (its worker died) goes back to the queue; one polled but never acknowledged is
handed out again after ``reclaim_older_than_ms``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agenthost.errors import Conflict, NotFound, PreconditionFailed
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.store.db import Database
from agenthost.store.paging import Page, PageRequest, fetch_page
from agenthost.store.tables import environment_workers, sessions, work_items

DEFAULT_TTL_SECONDS = 90
MIN_TTL_SECONDS, MAX_TTL_SECONDS = 1, 600
HELD = ("starting", "active", "stopping")  # a worker holds these while their lease lasts
NO_HEARTBEAT = "NO_HEARTBEAT"
POLLING_WINDOW_US = 30_000_000  # workers_polling counts the workers seen in the last 30 s


def work_json(row: Any) -> JSON:
    """The wire form of a work item; ``secret`` is never set (workers use their environment key)."""
    return {
        "id": row.id,
        "type": "work",
        "environment_id": row.environment_id,
        "data": {"type": "session", "id": row.session_id},
        "state": row.state,
        "metadata": row.metadata,
        "secret": None,
        "created_at": ts(row.created_at),
        "acknowledged_at": ts(row.acknowledged_at),
        "started_at": ts(row.started_at),
        "latest_heartbeat_at": row.latest_heartbeat,
        "stop_requested_at": ts(row.stop_requested_at),
        "stopped_at": ts(row.stopped_at),
    }


def _expired(now: int) -> sa.ColumnElement[bool]:
    """Held items whose worker stopped heartbeating: their lease ran out."""
    return sa.and_(work_items.c.state.in_(HELD), work_items.c.lease_expires_at < now)


def _requeue_values() -> dict[str, Any]:
    return {
        "state": "queued",
        "polled_at": None,
        "worker_id": None,
        "acknowledged_at": None,
        "latest_heartbeat": None,
        "latest_heartbeat_at": None,
        "lease_expires_at": None,
    }


def enqueue(
    conn: sa.Connection,
    workspace_id: str,
    environment_id: str,
    session_id: str,
    now: int,
) -> bool:
    """Make sure a worker will serve the session; inside the caller's transaction. True when it changed anything.

    A live item (queued, or held with its lease running) is enough. An item whose worker died
    goes back to the queue (never a second item beside it, so two workers never serve one
    session); one that was winding down (``stopping``) is finished; otherwise a new item is queued.
    """
    items = conn.execute(
        sa.select(work_items.c.id, work_items.c.state, work_items.c.lease_expires_at).where(
            work_items.c.session_id == session_id, work_items.c.state != "stopped"
        )
    ).all()
    if any(i.state == "queued" or (i.lease_expires_at or 0) >= now for i in items):
        return False
    # Every item left is expired: keep one whose worker died (it goes back to the queue), end the rest.
    revived = next((i for i in items if i.state in ("starting", "active")), None)
    for item in items:
        if item is not revived:
            conn.execute(work_items.update().where(work_items.c.id == item.id).values(state="stopped", stopped_at=now))
    if revived is not None:
        conn.execute(work_items.update().where(work_items.c.id == revived.id).values(**_requeue_values()))
        return True
    conn.execute(
        work_items.insert().values(
            id=new_id("work"),
            workspace_id=workspace_id,
            environment_id=environment_id,
            session_id=session_id,
            state="queued",
            metadata={},
            created_at=now,
            ttl_seconds=DEFAULT_TTL_SECONDS,  # a worker's lease is set when it acknowledges the item
        )
    )
    return True


def still_needed(conn: sa.Connection, session_id: str) -> bool:
    """Whether a session needs its worker now: a turn runs, or waits on calls (the worker's among them)."""
    row = conn.execute(
        sa.select(sessions.c.status, sessions.c.blocked_on, sessions.c.archived_at).where(sessions.c.id == session_id)
    ).first()
    if row is None or row.archived_at is not None:
        return False
    return row.status in ("running", "rescheduling") or bool(row.blocked_on)


class Work:
    """The work protocol's store operations, scoped to one workspace and environment."""

    def __init__(self, db: Database, ttl_seconds: int = DEFAULT_TTL_SECONDS):
        self.db = db
        self.ttl_seconds = ttl_seconds

    def _row(self, conn: sa.Connection, workspace_id: str, environment_id: str, work_id: str, lock: bool) -> Any:
        query = sa.select(work_items).where(
            work_items.c.id == work_id,
            work_items.c.workspace_id == workspace_id,
            work_items.c.environment_id == environment_id,
        )
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound(f"work item {work_id!r} not found in environment {environment_id}")
        return row

    def _available(self, workspace_id: str, environment_id: str, reclaim_after_ms: int, now: int) -> Any:
        waiting = sa.or_(
            sa.and_(
                work_items.c.state == "queued",
                sa.or_(work_items.c.polled_at.is_(None), work_items.c.polled_at < now - reclaim_after_ms * 1000),
            ),
            _expired(now),  # its worker died: the next one takes it (a stopping one, if still needed)
        )
        return (
            sa.select(work_items.c.id, work_items.c.state, work_items.c.session_id)
            .where(work_items.c.environment_id == environment_id, work_items.c.workspace_id == workspace_id)
            .where(waiting)
            .order_by(work_items.c.created_at, work_items.c.id)
            .limit(1)
        )

    async def any_available(self, workspace_id: str, environment_id: str, reclaim_after_ms: int) -> bool:
        """A read-only look at the queue, so a held poll does not write while it waits."""
        query = self._available(workspace_id, environment_id, reclaim_after_ms, now_us())
        return await self.db.run_read(lambda conn: conn.execute(query).first() is not None)

    async def poll(
        self, workspace_id: str, environment_id: str, worker_id: str | None, reclaim_after_ms: int
    ) -> JSON | None:
        """Hand out the oldest available item (it becomes pending), or None."""
        now = now_us()

        def write(conn: sa.Connection) -> JSON | None:
            if worker_id:
                self._seen(conn, environment_id, worker_id, now)
            query = self._available(workspace_id, environment_id, reclaim_after_ms, now)
            while True:
                found = conn.execute(query.with_for_update(skip_locked=True)).first()
                if found is None:
                    return None
                if found.state != "stopping" or still_needed(conn, found.session_id):
                    break
                # Told to stop, and its worker never confirmed: it is over.
                conn.execute(
                    work_items.update().where(work_items.c.id == found.id).values(state="stopped", stopped_at=now)
                )
            work_id = found.id
            handed = _requeue_values() | {"polled_at": now, "worker_id": worker_id}
            conn.execute(work_items.update().where(work_items.c.id == work_id).values(**handed))
            return work_json(self._row(conn, workspace_id, environment_id, work_id, lock=False))

        return await self.db.run_write(write)

    def _seen(self, conn: sa.Connection, environment_id: str, worker_id: str, now: int) -> None:
        """Record that ``worker_id`` polled now (an upsert: two first polls at once must not collide)."""
        insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
        statement = insert(environment_workers).values(
            environment_id=environment_id, worker_id=worker_id[:256], last_poll_at=now
        )
        conn.execute(
            statement.on_conflict_do_update(index_elements=["environment_id", "worker_id"], set_={"last_poll_at": now})
        )

    async def ack(self, workspace_id: str, environment_id: str, work_id: str) -> JSON:
        now = now_us()

        def write(conn: sa.Connection) -> JSON:
            row = self._row(conn, workspace_id, environment_id, work_id, lock=True)
            if row.state != "queued":
                raise Conflict(f"work item {work_id} is {row.state}; only a queued item can be acknowledged")
            conn.execute(
                work_items.update()
                .where(work_items.c.id == work_id)
                .values(
                    state="starting",
                    acknowledged_at=now,
                    ttl_seconds=self.ttl_seconds,
                    lease_expires_at=now + self.ttl_seconds * 1_000_000,
                )
            )
            return work_json(self._row(conn, workspace_id, environment_id, work_id, lock=False))

        return await self.db.run_write(write)

    async def heartbeat(
        self, workspace_id: str, environment_id: str, work_id: str, desired_ttl: int | None, expected: str | None
    ) -> JSON:
        """Extend the item's lease when ``expected`` is the stored heartbeat (``NO_HEARTBEAT`` for none)."""
        now = now_us()

        def write(conn: sa.Connection) -> JSON:
            row = self._row(conn, workspace_id, environment_id, work_id, lock=True)
            ttl = row.ttl_seconds if desired_ttl is None else max(MIN_TTL_SECONDS, min(MAX_TTL_SECONDS, desired_ttl))
            answer = {"type": "work_heartbeat", "state": row.state, "ttl_seconds": ttl}
            if row.state in ("stopping", "stopped"):  # not checked: the worker is told to wind down
                return {**answer, "last_heartbeat": row.latest_heartbeat or "", "lease_extended": False}
            stored = row.latest_heartbeat or NO_HEARTBEAT
            if row.state == "queued" or (expected is not None and expected != stored):
                raise PreconditionFailed(
                    "expected_last_heartbeat does not match the stored heartbeat; another worker may hold the lease",
                    error_code="heartbeat_precondition_failed",
                    details={
                        "current_state": {
                            "state": row.state,
                            "ttl_seconds": row.ttl_seconds,
                            "last_heartbeat": row.latest_heartbeat,
                            "lease_extended": False,
                        }
                    },
                )
            beat = ts(max(now, (row.latest_heartbeat_at or 0) + 1))
            assert beat is not None
            values: dict[str, Any] = {
                "state": "active",
                "latest_heartbeat": beat,
                "latest_heartbeat_at": now,
                "ttl_seconds": ttl,
                "lease_expires_at": now + ttl * 1_000_000,
            }
            if row.started_at is None:
                values["started_at"] = now
            conn.execute(work_items.update().where(work_items.c.id == work_id).values(**values))
            return {**answer, "state": "active", "last_heartbeat": beat, "lease_extended": True}

        return await self.db.run_write(write)

    async def stop(self, workspace_id: str, environment_id: str, work_id: str, force: bool) -> JSON:
        """Ask the worker to stop (``stopping``, seen at its next heartbeat), or end the item now (``force``)."""
        now = now_us()

        def write(conn: sa.Connection) -> JSON:
            row = self._row(conn, workspace_id, environment_id, work_id, lock=True)
            if row.state == "stopped":
                raise Conflict(f"work item {work_id} is already stopped")
            values: dict[str, Any] = {"stop_requested_at": row.stop_requested_at or now}
            if force or row.state == "queued":  # nobody holds a queued item: nothing to wind down
                values |= {"state": "stopped", "stopped_at": now, "lease_expires_at": None}
            else:
                values["state"] = "stopping"
            conn.execute(work_items.update().where(work_items.c.id == work_id).values(**values))
            if values["state"] == "stopped" and still_needed(conn, row.session_id):
                # The worker let the session go while a turn runs or waits on it: the next worker takes over.
                enqueue(conn, workspace_id, environment_id, row.session_id, now)
            return work_json(self._row(conn, workspace_id, environment_id, work_id, lock=False))

        return await self.db.run_write(write)

    async def get(self, workspace_id: str, environment_id: str, work_id: str) -> JSON:
        return await self.db.run_read(
            lambda conn: work_json(self._row(conn, workspace_id, environment_id, work_id, lock=False))
        )

    async def update_metadata(
        self, workspace_id: str, environment_id: str, work_id: str, patch: dict[str, str | None]
    ) -> JSON:
        def write(conn: sa.Connection) -> JSON:
            row = self._row(conn, workspace_id, environment_id, work_id, lock=True)
            merged = {**row.metadata}
            for key, value in patch.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            conn.execute(work_items.update().where(work_items.c.id == work_id).values(metadata=merged))
            return work_json(self._row(conn, workspace_id, environment_id, work_id, lock=False))

        return await self.db.run_write(write)

    async def list(self, workspace_id: str, environment_id: str, page: PageRequest) -> Page:
        query = sa.select(work_items).where(
            work_items.c.workspace_id == workspace_id, work_items.c.environment_id == environment_id
        )
        return await self.db.run_read(
            lambda conn: fetch_page(conn, query, work_items.c.id, page, work_json, lambda r: r.id)
        )

    async def stats(self, workspace_id: str, environment_id: str) -> JSON:
        now = now_us()

        def read(conn: sa.Connection) -> JSON:
            mine = sa.and_(work_items.c.workspace_id == workspace_id, work_items.c.environment_id == environment_id)
            queued = sa.and_(mine, work_items.c.state == "queued")
            depth, pending, oldest = conn.execute(
                sa.select(
                    sa.func.count().filter(work_items.c.polled_at.is_(None)),
                    sa.func.count().filter(work_items.c.polled_at.is_not(None)),
                    sa.func.min(work_items.c.created_at),
                ).where(queued)
            ).one()
            polling = conn.execute(
                sa.select(sa.func.count()).where(
                    environment_workers.c.environment_id == environment_id,
                    environment_workers.c.last_poll_at >= now - POLLING_WINDOW_US,
                )
            ).scalar_one()
            return {
                "type": "work_queue_stats",
                "depth": int(depth),
                "pending": int(pending),
                "oldest_queued_at": ts(oldest),
                "workers_polling": int(polling),
            }

        return await self.db.run_read(read)
