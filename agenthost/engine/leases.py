"""Every lease an engine holds, kept alive together, from a thread of its own (layer 3).

One write every third of a lease length extends all of them, however many runs there are.
With a task and a transaction per run, 200 runs made 120 heartbeat writes a second; and
with the beats on the event loop, a loaded machine (the loop busy with hundreds of runs, the
cores shared with other work) made them late enough for leases to lapse mid-turn and the
turns to be taken over (docs/benchmarks.md). So the beats run on their own thread and event
loop, with their own database connection: a busy loop delays them by a thread switch, not
by its queue.

A slow loop is still alive; a wedged one is not. The engine's loop ticks every second, and
the keeper stops extending once the loop has not ticked for a whole lease length, so a
process whose loop hangs loses its leases as a dead one would. A lease that a write did not
extend (taken over, reaped, its session deleted) stops its run. A queued interrupt whose
notification was lost is found here too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from agenthost.engine.journal import Lease
from agenthost.schemas.common import now_us
from agenthost.store.db import Database
from agenthost.store.tables import events, sessions

log = logging.getLogger("agenthost.engine")

CHUNK = 500  # leases per statement: two bound values each, well under either database's limit
TICK_SECONDS = 1.0


class Leases:
    """The leases of one engine's runs; :meth:`hold` one when a run claims, :meth:`drop` it when the run ends."""

    def __init__(self, db: Database, owner: str, lease_seconds: float, interrupt: Callable[[str], None]):
        self.db = db
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._interrupt = interrupt
        self._held: dict[str, tuple[Lease, asyncio.Task[None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._ticked = time.monotonic()

    def start(self) -> None:
        """Start the keeper thread and the loop's tick (call on the engine's loop)."""
        self._loop = asyncio.get_running_loop()
        self._on_tick()
        self._thread = threading.Thread(target=self._keep, name="agenthost-leases", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        self._stop.set()
        if self._tick is not None:
            self._tick.cancel()
        if self._thread is not None:  # a beat hung on a vanished database host must not hang the shutdown
            await asyncio.to_thread(self._thread.join, self.lease_seconds)

    def hold(self, lease: Lease, run: asyncio.Task[None]) -> None:
        """Keep ``lease`` alive while ``run`` goes on; ``run`` is cancelled if the lease is lost."""
        with self._lock:
            self._held[lease.session_id] = (lease, run)

    def drop(self, lease: Lease) -> None:
        """Stop extending ``lease`` (its run ended); a newer lease of the same session is kept."""
        with self._lock:
            held = self._held.get(lease.session_id)
            if held is not None and held[0] == lease:
                del self._held[lease.session_id]

    def _on_tick(self) -> None:
        self._ticked = time.monotonic()
        assert self._loop is not None
        self._tick = self._loop.call_later(TICK_SECONDS, self._on_tick)

    def _keep(self) -> None:
        asyncio.run(self._keep_beating())

    async def _keep_beating(self) -> None:
        db = self.db.for_another_loop()
        try:
            # This thread's own loop has nothing else to run between beats, so it may block waiting for the next.
            while not self._stop.wait(self.lease_seconds / 3):
                if time.monotonic() - self._ticked > self.lease_seconds:
                    log.error("the engine's event loop has not run for %.0f s: its leases lapse", self.lease_seconds)
                    continue
                try:
                    await self.beat(db)
                except Exception:
                    log.exception("extending the leases failed; trying again")
        finally:
            if db is not self.db:
                await db.close()

    async def beat(self, db: Database) -> None:
        """Extend every held lease in one transaction; stop the runs whose lease is gone."""
        with self._lock:
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

        kept, interrupted = await db.run_write(extend)
        loop = self._loop
        if loop is None or loop.is_closed():  # the engine's loop is gone: nothing left to tell
            self._stop.set()
            return
        for session_id in interrupted:
            loop.call_soon_threadsafe(self._interrupt, session_id)
        with self._lock:
            lost = [
                (session_id, run)
                for session_id, (lease, run) in held.items()
                if session_id not in kept and self._held.get(session_id, (None,))[0] == lease
            ]
            for session_id, _ in lost:
                del self._held[session_id]
        for session_id, run in lost:
            log.warning("the lease of %s is gone; stopping this run", session_id)
            loop.call_soon_threadsafe(run.cancel)
