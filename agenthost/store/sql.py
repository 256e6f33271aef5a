"""The store facade (layer 1): one object bundling the repositories over one database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from agenthost.store.agents import Agents
from agenthost.store.db import Database
from agenthost.store.environments import Environments
from agenthost.store.files import Files
from agenthost.store.idempotency import Idempotency
from agenthost.store.keys import STATIC_KEY_ID, Caller, Keys
from agenthost.store.listen import Listener
from agenthost.store.memory import MemoryStores, StoredMemory, VersionFilters
from agenthost.store.notifications import Handler
from agenthost.store.notify import Bus
from agenthost.store.resources import SessionResources
from agenthost.store.secrets import Sealer
from agenthost.store.sessions import Sessions
from agenthost.store.skills import Skills
from agenthost.store.vaults import Vaults
from agenthost.store.work import Work

log = logging.getLogger("agenthost.bus")
__all__ = ["STATIC_KEY_ID", "Caller", "MemoryStores", "Store", "StoredMemory", "VersionFilters"]


class Store:
    """Every repository of agenthost over one SQLAlchemy database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        url: str,
        *,
        files_dir: Path | None = None,
        secret_key: bytes | None = None,
        work_lease_seconds: int = 90,
        pool_size: int = 5,
        pool_overflow: int = 5,
        retry_seconds: float = 30.0,
    ):
        self.db = Database(url, pool_size=pool_size, pool_overflow=pool_overflow, retry_seconds=retry_seconds)
        sealer = Sealer(secret_key) if secret_key is not None else None
        self.vaults = Vaults(self.db, sealer)
        self.files = Files(self.db, files_dir)
        self.resources = SessionResources(self.db, self.files, sealer)
        self.skills = Skills(self.db, files_dir)
        self.keys = Keys(self.db)
        self.agents = Agents(self.db)
        self.environments = Environments(self.db)
        self.memory_stores = MemoryStores(self.db)
        self.bus = Bus(self.db)
        self.sessions = Sessions(self.db, self.bus, self.files, sealer)
        self.idempotency = Idempotency(self.db)
        self.work = Work(self.db, work_lease_seconds)
        self._listener: Listener | None = None
        self._healing: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Migrate the schema to the newest revision."""
        await self.db.migrate()

    async def listen(self, handlers: Sequence[Handler] = (), check_seconds: float = 5.0) -> None:
        """Hear what other processes commit: on PostgreSQL, notifications for the bus and ``handlers``.

        On SQLite (one process) there is nothing to hear, but the bus still compares its feeds with
        the log every ``check_seconds``, so a publish lost to a cancelled request only delays a stream.
        """
        if self._listener is not None or self._healing is not None:
            return
        if self.db.is_sqlite:
            self._healing = asyncio.create_task(self._heal_forever(check_seconds), name="agenthost-heal")
            return
        self._listener = Listener(
            self.db.url,
            [self.bus.on_notification, *handlers],
            resync=self.bus.resync,
            heal=self.bus.heal,
            check_seconds=check_seconds,
        )
        await self._listener.start()

    async def _heal_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.bus.heal()
            except Exception:
                log.exception("comparing streams with the log failed; trying again")

    async def stop_listening(self) -> None:
        """Stop hearing other processes (first, at shutdown: nothing is handed to parts that are stopping)."""
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._healing is not None:
            self._healing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._healing
            self._healing = None

    async def close(self) -> None:
        await self.stop_listening()
        self.bus.close()
        await self.db.close()
