"""Every lease an engine holds, kept alive together (layer 3).

One write every third of a lease length extends all of them, however many runs there are.
With a task and a transaction per run, 200 runs made 120 heartbeat writes a second that
queued for connections behind the turns' own; on a loaded machine the beats landed late
enough for leases to lapse mid-turn, and the turns were taken over (docs/benchmarks.md).
A lease that the write did not extend (taken over, reaped, its session deleted) stops its
run. A queued interrupt whose notification was lost is found here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import sqlalchemy as sa

from agenthost.engine.journal import Lease
from agenthost.schemas.common import now_us
from agenthost.store.db import Database
from agenthost.store.tables import events, sessions

log = logging.getLogger("agenthost.engine")

CHUNK = 500  # leases per statement: two bound values each, well under either database's limit


class Leases:
    """The leases of one engine's runs; :meth:`hold` one when a run claims, :meth:`drop` it when the run ends."""

    def __init__(self, db: Database, owner: str, lease_seconds: float, interrupt: Callable[[str], None]):
        self.db = db
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._interrupt = interrupt
        self._held: dict[str, tuple[Lease, asyncio.Task[None]]] = {}
        self._keeper: asyncio.Task[None] | None = None

    def hold(self, lease: Lease, run: asyncio.Task[None]) -> None:
        """Keep ``lease`` alive while ``run`` goes on; ``run`` is cancelled if the lease is lost."""
        self._held[lease.session_id] = (lease, run)
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="agenthost-leases")

    def drop(self, lease: Lease) -> None:
        """Stop extending ``lease`` (its run ended); a newer lease of the same session is kept."""
        held = self._held.get(lease.session_id)
        if held is not None and held[0] == lease:
            del self._held[lease.session_id]

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)

    async def _keep(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.beat()
            except Exception:
                log.exception("extending the leases failed; trying again")

    async def beat(self) -> None:
        """Extend every held lease in one transaction; stop the runs whose lease is gone."""
        held = dict(self._held)
        if not held:
            return
        expires = now_us() + int(self.lease_seconds * 1_000_000)
        owner = self.owner

        def extend(conn: sa.Connection) -> tuple[set[str], set[str]]:
            kept: set[str] = set()
            interrupted: set[str] = set()
            keys = [(lease.session_id, lease.generation) for lease, _ in held.values()]
            for start in range(0, len(keys), CHUNK):
                ours = sa.and_(
                    sessions.c.lease_owner == owner,
                    sa.tuple_(sessions.c.id, sessions.c.lease_generation).in_(keys[start : start + CHUNK]),
                )
                conn.execute(sessions.update().where(ours).values(lease_expires_at=expires))
                found = set(conn.execute(sa.select(sessions.c.id).where(ours)).scalars())
                kept |= found
                queued = sa.select(events.c.session_id).where(
                    events.c.session_id.in_(found), events.c.processed_at.is_(None), events.c.type == "user.interrupt"
                )
                interrupted |= set(conn.execute(queued.distinct()).scalars())
            return kept, interrupted

        kept, interrupted = await self.db.run_write(extend)
        for session_id in interrupted:
            self._interrupt(session_id)
        for session_id, (lease, run) in held.items():
            if session_id not in kept and self._held.get(session_id, (None,))[0] == lease:
                log.warning("the lease of %s is gone; stopping this run", session_id)
                del self._held[session_id]
                run.cancel()
