"""Fenced writes of one run to the event log (layer 3; DESIGN invariants 1, 2 and 5).

Every engine write checks, in its own transaction, that this run still holds the
session's lease (owner and generation); a runner that lost its lease can write nothing.
Status changes are written in the same transaction as their status event, and events
are published only after the commit, so a client that sees ``session.status_idle`` never
reads "running" afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from agenthost.schemas.common import JSON, now_us
from agenthost.store.db import Database
from agenthost.store.notify import Bus
from agenthost.store.sessions import Logged, append_events
from agenthost.store.tables import events, sessions

T = TypeVar("T")


class LeaseLost(Exception):
    """Another runner holds the session now (or the session is gone); stop without writing."""


@dataclass(frozen=True)
class Lease:
    session_id: str
    owner: str
    generation: int


_FENCED = [column for column in sessions.c if column.name != "agent"]


class Journal:
    """Writes one run makes: events, status and usage, each write fenced by the lease."""

    def __init__(self, db: Database, bus: Bus, lease: Lease):
        self.db = db
        self.bus = bus
        self.lease = lease

    def _fence(self, conn: sa.Connection) -> Any:
        # Every column a run's step reads, but not the agent snapshot (large JSON, read once per run).
        query = sa.select(*_FENCED).where(
            sessions.c.id == self.lease.session_id,
            sessions.c.lease_owner == self.lease.owner,
            sessions.c.lease_generation == self.lease.generation,
        )
        row = conn.execute(query.with_for_update(of=sessions)).first()
        if row is None:
            raise LeaseLost(self.lease.session_id)
        return row

    async def transact(self, work: Callable[[sa.Connection, Any, int, list[Logged]], T]) -> T:
        """Run ``work(conn, session_row, now, published)`` under the fence; publish what it appended after commit.

        ``work`` appends to ``published`` the (seq, event) pairs to hand to subscribers.
        """
        published: list[Logged] = []

        def write(conn: sa.Connection) -> T:
            row = self._fence(conn)
            published.clear()
            return work(conn, row, now_us(), published)

        result = await self.db.run_write(write)
        self.bus.publish(self.lease.session_id, published)
        return result

    async def append(self, payloads: list[JSON], **session_values: Any) -> list[JSON]:
        """Append processed events and optionally change session columns, atomically."""

        def work(conn: sa.Connection, row: Any, now: int, published: list[Logged]) -> list[JSON]:
            if session_values:
                values = {k: (v(row, now) if callable(v) else v) for k, v in session_values.items()}
                conn.execute(
                    sessions.update().where(sessions.c.id == self.lease.session_id).values(updated_at=now, **values)
                )
            logged = append_events(conn, self.lease.session_id, payloads, processed=True, now=now)
            published.extend(logged)
            return [event for _, event in logged]

        return await self.transact(work)


class LogReader:
    """The processed events of one session in processing order, read incrementally during a run.

    Processing only moves forward in time, so after the first read each call fetches just the
    events processed since the last one (the transcript does not re-read the whole log per call).
    Events carry ``id``, ``type`` and their payload; timestamps are not needed for the model.
    """

    def __init__(self, db: Database, session_id: str):
        self.db = db
        self.session_id = session_id
        self.events: list[JSON] = []
        self._last: tuple[int, int] | None = None

    async def read(self) -> list[JSON]:
        session_id, last = self.session_id, self._last

        def fetch(conn: sa.Connection) -> list[Any]:
            query = sa.select(events.c.id, events.c.payload, events.c.processed_at, events.c.seq).where(
                events.c.session_id == session_id, events.c.processed_at.is_not(None), events.c.flushed.is_(False)
            )
            if last is not None:
                position = sa.tuple_(sa.literal(last[0]), sa.literal(last[1]))
                query = query.where(sa.tuple_(events.c.processed_at, events.c.seq) > position)
            return list(conn.execute(query.order_by(events.c.processed_at, events.c.seq)))

        rows = await self.db.run_read(fetch)
        self.events.extend({"id": row.id, **row.payload} for row in rows)
        if rows:
            self._last = (rows[-1].processed_at, rows[-1].seq)
        return self.events
