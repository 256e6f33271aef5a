"""The database handle (layer 1): engine, read and write transactions, migrations.

SQLite runs in WAL mode with one writer: write transactions in this process take an
asyncio lock and start with ``BEGIN IMMEDIATE`` (so another process, such as the CLI,
waits on ``busy_timeout`` instead of failing an upgrade from read to write).
PostgreSQL uses ordinary ``READ COMMITTED`` transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agenthost.errors import Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Database:
    """One engine plus the transaction discipline every repository uses."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
        if self.is_sqlite:
            # Write transactions always end in an explicit COMMIT or ROLLBACK and reads hold none,
            # so the pool's rollback-on-return round trip is not needed.
            options["pool_reset_on_return"] = None
            path = url.partition("///")[2]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            options |= {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}
        self.engine: AsyncEngine = create_async_engine(url, **options)
        self._write_lock = asyncio.Lock()
        if self.is_sqlite:
            self._configure_sqlite()

    def _configure_sqlite(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take over BEGIN from the driver so writes can say IMMEDIATE (SQLAlchemy's aiosqlite recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # Reads run in autocommit (each statement is its own snapshot), which saves two
            # round trips to aiosqlite's thread per request; writes take the write lock up front.
            if conn.get_execution_options().get("agenthost_write", False):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On SQLite each statement is its own snapshot (autocommit)."""
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block exits without an exception."""
        if not self.is_sqlite:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(agenthost_write=True)
            async with conn.begin():
                yield conn

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(agenthost_write=True)  # one IMMEDIATE transaction on SQLite
            await conn.run_sync(_upgrade)
            await conn.commit()

    async def ping(self) -> None:
        """Raise ``Unavailable`` when the database cannot be reached."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"database unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: sa.Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
