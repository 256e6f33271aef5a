"""The store facade (layer 1): one object bundling the repositories over one database."""

from __future__ import annotations

from collections.abc import Sequence

from agenthost.store.agents import Agents
from agenthost.store.db import Database
from agenthost.store.environments import Environments
from agenthost.store.idempotency import Idempotency
from agenthost.store.keys import Keys
from agenthost.store.listen import Listener
from agenthost.store.notify import Bus, Handler
from agenthost.store.sessions import Sessions


class Store:
    """Every repository of agenthost over one SQLAlchemy database (SQLite or PostgreSQL)."""

    def __init__(self, url: str):
        self.db = Database(url)
        self.keys = Keys(self.db)
        self.agents = Agents(self.db)
        self.environments = Environments(self.db)
        self.bus = Bus(self.db)
        self.sessions = Sessions(self.db, self.bus)
        self.idempotency = Idempotency(self.db)
        self._listener: Listener | None = None

    async def open(self) -> None:
        """Migrate the schema to the newest revision."""
        await self.db.migrate()

    async def listen(self, handlers: Sequence[Handler] = (), check_seconds: float = 5.0) -> None:
        """On PostgreSQL, hear other processes' notifications: events for the bus, and ``handlers``'s kinds."""
        if self.db.is_sqlite or self._listener is not None:
            return
        self._listener = Listener(
            self.db.url,
            [self.bus.on_notification, *handlers],
            resync=self.bus.resync,
            heal=self.bus.heal,
            check_seconds=check_seconds,
        )
        await self._listener.start()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self.db.close()
