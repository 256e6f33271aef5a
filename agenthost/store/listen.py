"""PostgreSQL ``LISTEN`` (layer 1): hands other processes' notifications to this process's bus and engine.

One dedicated asyncpg connection per process listens on ``notify.CHANNEL``. It is checked
every ``check_seconds``; when it drops, the listener reconnects with backoff and then calls
``resync`` so that whatever was announced meanwhile is read from the log. The same timer runs
``heal``, which catches a notification lost any other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import sqlalchemy as sa

from agenthost.store.notifications import CHANNEL, Handler, Notification

log = logging.getLogger("agenthost.bus")
APPLICATION_NAME = "agenthost-listen"  # how the connection shows in pg_stat_activity


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` form of a SQLAlchemy URL, for asyncpg itself."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """Receives notifications on one connection and dispatches them to ``handlers``."""

    def __init__(
        self,
        url: str,
        handlers: Sequence[Handler],
        *,
        resync: Callable[[], None],
        heal: Callable[[], Awaitable[None]],
        check_seconds: float = 5.0,
    ):
        self._dsn = asyncpg_dsn(url)
        self._handlers = list(handlers)
        self._resync = resync
        self._heal = heal
        self._check_seconds = check_seconds
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self, timeout: float = 30.0) -> None:
        """Start listening; return once the first LISTEN is in place (so nothing after it is missed)."""
        self._task = asyncio.create_task(self._run(), name="agenthost-listen")
        async with asyncio.timeout(timeout):
            await self._listening.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dispatch(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        note = Notification.parse(payload)
        if note is None:
            log.warning("ignoring a malformed notification %r", payload)
            return
        for handler in self._handlers:
            try:
                handler(note)
            except Exception:
                log.exception("handling notification %r failed", payload)

    async def _run(self) -> None:
        backoff = 0.1
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME}
                )
                await conn.add_listener(CHANNEL, self._dispatch)
                self._listening.set()
                if not first:
                    self._resync()  # anything announced while this process was not listening is in the log
                first, backoff = False, 0.1
                while True:
                    await asyncio.sleep(self._check_seconds)
                    await conn.fetchval("SELECT 1", timeout=self._check_seconds)
                    await self._heal()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listening for notifications failed (%s); reconnecting", exc)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
