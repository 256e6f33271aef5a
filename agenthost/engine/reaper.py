"""The reaper (layer 3): a run that died is shown as rescheduled even when no engine is there.

An engine that finds an expired lease claims the session, and writes ``session.status_rescheduled``
in the claim's transaction (``Engine._claim``). API-only replicas (``serve --no-engine``) run
this loop instead, so that when every worker is gone (killed, so its lease expired; or stopped,
so it handed the lease back mid-turn) the session reads ``rescheduling``, not ``running``. Its
lease is cleared (the generation bumped, so the old run can write nothing more), the status and
its event are written in one transaction, and engines are told it is runnable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa

from agenthost.schemas.common import now_us
from agenthost.store.db import Database
from agenthost.store.notifications import announce
from agenthost.store.notify import Bus
from agenthost.store.sessions import Logged, append_events
from agenthost.store.tables import sessions

log = logging.getLogger("agenthost.engine")
BATCH = 100


async def reap_expired(db: Database, bus: Bus) -> int:
    """Release every expired lease (up to ``BATCH``); return how many were released."""
    now = now_us()
    # A run's lease expired, or a stopping engine handed it back mid-turn (owner cleared, still running).
    died = sa.or_(
        sa.and_(sessions.c.lease_owner.is_not(None), sessions.c.lease_expires_at < now),
        sa.and_(
            sessions.c.lease_owner.is_(None), sessions.c.status == "running", sessions.c.running_since.is_not(None)
        ),
    )
    query = sa.select(sessions.c.id).where(died).limit(BATCH)
    expired = list(await db.run_read(lambda conn: conn.execute(query).scalars().all()))
    for session_id in expired:

        def release(conn: sa.Connection, session_id: str = session_id) -> list[Logged]:
            row = conn.execute(
                sa.select(sessions.c.status, sessions.c.running_since)
                .where(sessions.c.id == session_id, died)
                .with_for_update()
            ).first()
            if row is None:
                return []  # claimed, released or finished meanwhile
            values: dict[str, Any] = {
                "lease_owner": None,
                "lease_expires_at": None,
                "lease_generation": sessions.c.lease_generation + 1,
            }
            rescheduled = row.status == "running" and row.running_since is not None
            if rescheduled:
                values["status"] = "rescheduling"
            conn.execute(sessions.update().where(sessions.c.id == session_id).values(**values))
            announce(conn, "w", session_id)
            if not rescheduled:
                return []
            return append_events(conn, session_id, [{"type": "session.status_rescheduled"}], processed=True, now=now)

        bus.publish(session_id, await db.run_write(release))
    return len(expired)


async def reap_forever(db: Database, bus: Bus, interval: float) -> None:
    """Run :func:`reap_expired` every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await reap_expired(db, bus)
        except Exception:
            log.exception("releasing expired leases failed; trying again")
