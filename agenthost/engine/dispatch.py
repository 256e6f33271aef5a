"""The dispatcher (layer 3): claims runnable sessions through leases and runs them.

A session is runnable when it has ``pending`` input and no live lease. Claiming is a
compare-and-set in the database (owner, a bumped generation, an expiry), the same path
whether one process or many run engines. A claimed session gets one task running
:class:`~agenthost.engine.loop.Run`, and its lease joins those the engine extends
together (:mod:`~agenthost.engine.leases`); when the run ends the task ends: an idle
session holds no coroutine. Wake-ups come in-process
from the API (``wake``); a slow poll also picks up sessions whose lease expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict

import sqlalchemy as sa

from agenthost.engine.journal import Carried, Journal, Lease, LeaseLost, NotClaimed
from agenthost.engine.leases import Leases
from agenthost.engine.loop import Run, Stores
from agenthost.engine.setup import sandbox_spec
from agenthost.errors import Unavailable
from agenthost.metrics import Metrics
from agenthost.providers.base import ModelProviders
from agenthost.sandbox.base import SandboxBackend
from agenthost.schemas.common import now_us
from agenthost.settings import Settings
from agenthost.store.db import Database
from agenthost.store.notifications import ORIGIN, Notification
from agenthost.store.notify import Bus
from agenthost.store.tables import environments, sessions

log = logging.getLogger("agenthost.engine")

CARRIED_SESSIONS = 64
"""Sessions whose log, as read by their last run, is kept for their next run (the most recent ones)."""


class Engine:
    """Runs the turns of every session this process claims."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        providers: ModelProviders,
        sandboxes: SandboxBackend,
        settings: Settings,
        stores: Stores | None = None,
        metrics: Metrics | None = None,
    ):
        self.db = db
        self.metrics = metrics
        self.stores = stores
        self.bus = bus
        self.providers = providers
        self.sandboxes = sandboxes
        self.settings = settings
        self.owner = f"engine_{secrets.token_hex(6)}"
        self._wake = asyncio.Event()
        self._hints: set[str] = set()
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._interrupts: dict[str, asyncio.Event] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._carried: OrderedDict[str, Carried] = OrderedDict()
        self._backoff: dict[str, float] = {}  # session -> loop time before which no run starts
        self.leases = Leases(db, self.owner, settings.lease_seconds, self.interrupt)
        if metrics is not None:
            metrics.gauge("agenthost_sessions_running", "Sessions this engine is running now", lambda: len(self._runs))
            metrics.gauge("agenthost_sandboxes_live", "Sandboxes this engine holds open", sandboxes.live)

    async def start(self) -> None:
        await self.sandboxes.reconcile(self._existing)
        self.leases.start()
        self._loop_task = asyncio.create_task(self._dispatch(), name="agenthost-dispatch")

    async def stop(self) -> None:
        """Stop claiming; cancel runs and hand their leases back so another engine can continue them."""
        for timer in self._idle_timers.values():
            timer.cancel()
        self._idle_timers.clear()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        runs = [*self._runs.values(), *self._background]
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        await self.leases.close()
        owner = self.owner
        await self.db.run_write(
            lambda conn: conn.execute(
                sessions.update().where(sessions.c.lease_owner == owner).values(lease_owner=None, lease_expires_at=None)
            )
        )

    async def _existing(self, session_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(session_ids), 500):
            chunk = session_ids[start : start + 500]
            query = sa.select(sessions.c.id).where(sessions.c.id.in_(chunk))
            found.update(await self.db.run_read(lambda conn, query=query: conn.execute(query).scalars().all()))
        return found

    def wake(self, session_id: str | None = None) -> None:
        """New input exists (for ``session_id``, when known): claim it now, or look for runnable sessions."""
        if session_id is not None:
            self._hints.add(session_id)
        self._wake.set()

    def interrupt(self, session_id: str) -> None:
        """A user.interrupt was queued for a session this process may be running."""
        event = self._interrupts.get(session_id)
        if event is not None:
            event.set()

    def on_notification(self, note: Notification) -> None:
        """Another process queued input or an interrupt for a session, or deleted one."""
        if note.origin == ORIGIN:
            return  # this process acted on it directly
        if note.kind == "w":
            self.wake(note.session_id)
        elif note.kind == "i":
            self.interrupt(note.session_id)
        elif note.kind == "d":
            task = asyncio.create_task(self._forget_deleted(note.session_id), name=f"forget-{note.session_id}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _forget_deleted(self, session_id: str) -> None:
        try:
            await self.forget(session_id)
        except Exception:  # the next start's reconcile removes what is left
            log.exception("removing the sandbox of deleted session %s failed", session_id)

    def _stop_sandbox_later(self, session_id: str) -> None:
        """An idle session keeps no processes: its sandbox stops after ``sandbox_idle_seconds`` without a run."""

        def stop() -> None:
            self._idle_timers.pop(session_id, None)
            self._carried.pop(session_id, None)
            if session_id not in self._runs:
                task = asyncio.create_task(self.sandboxes.stop(session_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

        previous = self._idle_timers.pop(session_id, None)
        if previous is not None:
            previous.cancel()
        self._idle_timers[session_id] = asyncio.get_running_loop().call_later(self.settings.sandbox_idle_seconds, stop)

    def provision(self, session_id: str) -> None:
        """Prepare a new session's sandbox (directories, environment packages) without blocking the caller.

        No process starts; a failure is logged here and shows as a session.error at the first tool call.
        """
        task = asyncio.create_task(self._provision(session_id), name=f"provision-{session_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _provision(self, session_id: str) -> None:
        query = (
            sa.select(sessions.c.agent, environments.c.fields)
            .join(environments, environments.c.id == sessions.c.environment_id)
            .where(sessions.c.id == session_id)
        )
        try:
            row = await self.db.run_read(lambda conn: conn.execute(query).first())
            config = {} if row is None else row.fields.get("config", {})
            if row is not None and config.get("type") != "self_hosted":  # its worker has its own machine
                await self.sandboxes.prepare(sandbox_spec(session_id, config, row.agent))
        except Exception as exc:  # noqa: BLE001 - the first tool call reports it to the client
            log.warning("provisioning the sandbox of %s failed: %s", session_id, exc)

    async def forget(self, session_id: str) -> None:
        """The session was deleted: remove its sandbox and workspace."""
        self._carried.pop(session_id, None)
        await self.sandboxes.destroy(session_id)

    async def _dispatch(self) -> None:
        last_scan = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.engine_poll_seconds)
            self._wake.clear()
            hints, self._hints = self._hints, set()
            # Input for a session this process is running waits for the run's end (``_run`` wakes for it).
            self._hints = hints & self._runs.keys()
            # The API said which sessions got input: claim those directly, without a scan.
            for session_id in hints - self._hints:
                self._start(session_id)
            # A scan at least every poll interval, whatever the wake-ups: expired leases, other processes' input.
            if loop.time() - last_scan >= self.settings.engine_poll_seconds:
                last_scan = loop.time()
                try:
                    await self._claim_runnable()
                except Exception:
                    log.exception("scanning for runnable sessions failed; retrying at the next poll")

    async def _claim_runnable(self) -> None:
        now = now_us()
        busy = list(self._runs)
        query = (
            sa.select(sessions.c.id)
            .where(
                sessions.c.pending.is_(True),
                sa.or_(sessions.c.lease_owner.is_(None), sessions.c.lease_expires_at < now),
            )
            .limit(100)
        )
        candidates = [r for (r,) in await self.db.run_read(lambda conn: conn.execute(query).all()) if r not in busy]
        if self.metrics is not None:
            self.metrics.sessions_waiting.set(len(candidates))
        for session_id in candidates:
            self._start(session_id)

    def _start(self, session_id: str) -> None:
        """Start a run that claims the session in its first write (it ends at once if it cannot)."""
        if session_id in self._runs:  # e.g. started since the scan read its candidates
            return
        if self._backoff.get(session_id, 0.0) > asyncio.get_running_loop().time():
            return  # its last run failed before it could claim: the scan tries again later
        self._backoff.pop(session_id, None)
        self._interrupts[session_id] = asyncio.Event()
        self._runs[session_id] = asyncio.create_task(self._run(session_id), name=f"run-{session_id}")

    def _claimed(self, lease: Lease, run_task: asyncio.Task[None]) -> None:
        log.info("%s claimed %s (lease generation %d)", self.owner, lease.session_id, lease.generation)
        timer = self._idle_timers.pop(lease.session_id, None)
        if timer is not None:
            timer.cancel()
        self.leases.hold(lease, run_task)

    async def _run(self, session_id: str) -> None:
        run_task = asyncio.current_task()
        assert run_task is not None
        claimed: list[Lease] = []

        def on_claimed(lease: Lease) -> None:
            claimed.append(lease)
            self._claimed(lease, run_task)

        journal = Journal(
            self.db,
            self.bus,
            Lease(session_id, self.owner, 0),
            claim_seconds=self.settings.lease_seconds,
            on_claimed=on_claimed,
        )
        carried = self._carried.pop(session_id, None)
        run = Run(
            journal,
            self.providers,
            self.sandboxes,
            self.settings,
            self._interrupts[session_id],
            self.stores,
            carried,
            self.metrics,
        )
        try:
            await run.execute()
            self._carried[session_id] = run.carry()
            while len(self._carried) > CARRIED_SESSIONS:
                self._carried.popitem(last=False)
        except NotClaimed:  # no input after all, or another engine holds it: nothing was read or written
            if carried is not None:
                self._carried[session_id] = carried
        except LeaseLost:
            log.warning("lost the lease of %s; another engine continues it", session_id)
        except Unavailable as exc:
            log.warning("run of %s stopped: %s; its lease is left to lapse, then it continues", session_id, exc)
            if not claimed:
                self._backoff[session_id] = asyncio.get_running_loop().time() + self.settings.lease_seconds
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run of %s failed; the lease is left to expire", session_id)
            if not claimed:  # it failed in the claiming write, which left no lease: wait as long as one
                self._backoff[session_id] = asyncio.get_running_loop().time() + self.settings.lease_seconds
        finally:
            for lease in claimed:
                self.leases.drop(lease)
            self._runs.pop(session_id, None)
            self._interrupts.pop(session_id, None)
            if claimed or session_id not in self._idle_timers:  # its timer may have fired during the claim
                self._stop_sandbox_later(session_id)
            if session_id in self._hints:  # input arrived during the run, maybe after its last look
                self._wake.set()
