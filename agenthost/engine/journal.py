"""Fenced writes of one run to the event log (layer 3).

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

from agenthost.engine.session_files import SessionFiles
from agenthost.engine.transcript import Transcript
from agenthost.schemas.common import JSON, now_us
from agenthost.store.db import Database
from agenthost.store.notify import Bus
from agenthost.store.sessions import Logged, append_events
from agenthost.store.tables import events, sessions

T = TypeVar("T")


class LeaseLost(Exception):
    """Another runner holds the session now (or the session is gone); stop without writing."""


class NotClaimed(LeaseLost):
    """The run's first write found no input to claim, or another runner's live lease: nothing was written."""


@dataclass(frozen=True)
class Lease:
    session_id: str
    owner: str
    generation: int


# Every column a run's step reads, but not the agent snapshot (large JSON, read once per run).
_FENCE = (
    sa.select(*[column for column in sessions.c if column.name != "agent"])
    .where(
        sessions.c.id == sa.bindparam("sid"),
        sessions.c.lease_owner == sa.bindparam("owner"),
        sessions.c.lease_generation == sa.bindparam("generation"),
    )
    .with_for_update(of=sessions)
)


_CLAIM = (
    sessions.update()
    .where(
        sessions.c.id == sa.bindparam("sid"),
        sessions.c.pending.is_(True),
        sa.or_(sessions.c.lease_owner.is_(None), sessions.c.lease_expires_at < sa.bindparam("now")),
    )
    .values(
        lease_owner=sa.bindparam("owner"),
        lease_generation=sessions.c.lease_generation + 1,
        lease_expires_at=sa.bindparam("expires"),
    )
    .returning(sessions.c.lease_generation, sessions.c.status, sessions.c.running_since)
)
"""Take a session's lease when it has input and no live lease (a compare-and-set)."""


def claim(conn: sa.Connection, session_id: str, owner: str, now: int, expires: int, published: list[Logged]) -> int:
    """Take the session's lease inside the caller's transaction; its new generation (``NotClaimed`` if none).

    A run that had the turn and died with it (its lease expired) leaves the session running: it is
    rescheduled in the same transaction, and the run that claims it takes the turn over.
    """
    taken = conn.execute(_CLAIM, {"sid": session_id, "now": now, "owner": owner, "expires": expires}).first()
    if taken is None:
        raise NotClaimed(session_id)
    if taken.status == "running" and taken.running_since is not None:
        conn.execute(sessions.update().where(sessions.c.id == session_id).values(status="rescheduling"))
        rescheduled = [{"type": "session.status_rescheduled"}]
        published.extend(append_events(conn, session_id, rescheduled, processed=True, now=now))
    return int(taken.lease_generation)


class Journal:
    """Writes one run makes: events, status and usage, each write fenced by the lease.

    Given ``claim_seconds``, the run has no lease yet: its first write takes one (for that long)
    in the same transaction, and ``on_claimed`` is called with it after the commit.
    """

    def __init__(
        self,
        db: Database,
        bus: Bus,
        lease: Lease,
        *,
        claim_seconds: float | None = None,
        on_claimed: Callable[[Lease], None] | None = None,
    ):
        self.db = db
        self.bus = bus
        self.lease = lease
        self._claim_us = None if claim_seconds is None else int(claim_seconds * 1_000_000)
        self._on_claimed = on_claimed
        self.row: Any = None
        """The session's row as the newest committed write of this run read it (under its lock)."""

    def _fence(self, conn: sa.Connection, lease: Lease) -> Any:
        row = conn.execute(
            _FENCE, {"sid": lease.session_id, "owner": lease.owner, "generation": lease.generation}
        ).first()
        if row is None:
            raise LeaseLost(self.lease.session_id)
        return row

    async def transact(self, work: Callable[[sa.Connection, Any, int, list[Logged]], T]) -> T:
        """Run ``work(conn, session_row, now, published)`` under the fence; publish what it appended after commit.

        ``work`` appends to ``published`` the (seq, event) pairs to hand to subscribers.
        """
        published: list[Logged] = []
        fenced: list[Any] = []
        claimed: list[Lease] = []

        def write(conn: sa.Connection) -> T:
            published.clear()
            if self._claim_us is not None:
                now, lease = now_us(), self.lease
                generation = claim(conn, lease.session_id, lease.owner, now, now + self._claim_us, published)
                claimed[:] = [Lease(lease.session_id, lease.owner, generation)]
            fenced[:] = [self._fence(conn, claimed[0] if claimed else self.lease)]
            return work(conn, fenced[0], now_us(), published)

        result = await self.db.run_write(write)
        self.row = fenced[0]
        if claimed:
            self.lease, self._claim_us = claimed[0], None
            if self._on_claimed is not None:
                self._on_claimed(self.lease)
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


_PROCESSED = sa.select(events.c.id, events.c.payload, events.c.emit_last).where(
    events.c.session_id == sa.bindparam("sid"), events.c.processed_at.is_not(None), events.c.flushed.is_(False)
)
_PROCESSED_SINCE = _PROCESSED.where(events.c.emit_last > sa.bindparam("after", type_=sa.BigInteger)).order_by(
    events.c.emit_last
)
_PROCESSED = _PROCESSED.order_by(events.c.processed_at, events.c.seq)


class LogReader:
    """The processed events of one session in processing order, read incrementally during a run.

    The first read takes the whole log in processing order; each later one takes what was shown
    processed since, by emission number. Emission numbers are allocated under the session row's
    lock in commit order, whatever the writers' clocks say, so no event processed later (by an
    API process on another host, say) can fall behind the reader's position. Events carry ``id``,
    ``type`` and their payload; timestamps are not needed for the model.
    """

    def __init__(self, db: Database, session_id: str):
        self.db = db
        self.session_id = session_id
        self.events: list[JSON] = []
        self._last: int | None = None  # the highest emission number read

    async def read(self) -> list[JSON]:
        """Every processed event so far (one read of what is new)."""
        return self.absorb(await self.db.run_read(self.fetch))

    def fetch(self, conn: sa.Connection) -> list[Any]:
        """The rows processed since the last absorbed read (inside any transaction)."""
        if self._last is None:
            return list(conn.execute(_PROCESSED, {"sid": self.session_id}))
        return list(conn.execute(_PROCESSED_SINCE, {"sid": self.session_id, "after": self._last}))

    def absorb(self, rows: list[Any]) -> list[JSON]:
        """Add rows from ``fetch`` once their transaction committed; return every processed event so far."""
        self.events.extend({"id": row.id, **row.payload} for row in rows)
        if rows:
            self._last = max(self._last or 0, max(row.emit_last for row in rows))
        return self.events


@dataclass
class Carried:
    """What a run leaves to the session's next run in the same process: the log read so far and its messages.

    Only the run right after it may use it (lease generation + 1): any other claim in between may
    have been another process's, whose run this process did not see.
    """

    generation: int
    log: LogReader
    transcript: Transcript
    session_files: SessionFiles | None
