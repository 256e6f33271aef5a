"""The store facade (layer 1): one object bundling the repositories over one database."""

from __future__ import annotations

from agenthost.store.agents import Agents
from agenthost.store.db import Database
from agenthost.store.environments import Environments
from agenthost.store.idempotency import Idempotency
from agenthost.store.keys import Keys
from agenthost.store.notify import Bus
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

    async def open(self) -> None:
        """Migrate the schema to the newest revision."""
        await self.db.migrate()

    async def close(self) -> None:
        await self.db.close()
