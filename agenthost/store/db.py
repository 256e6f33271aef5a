"""The database handle (layer 1): engines, read and write transactions, migrations.

Repositories write their queries as plain synchronous functions of a SQLAlchemy
``Connection`` and hand them to :meth:`Database.run_read` or :meth:`Database.run_write`,
which run them off the event loop:

- **SQLite** runs on the standard ``sqlite3`` driver in worker threads: reads on a small
  pool (WAL lets them run beside a writer, each statement in autocommit), writes on one
  thread, each write one ``BEGIN IMMEDIATE`` transaction. A whole transaction is one hop
  from the event loop; through aiosqlite every driver call was a hop, and reads served half
  as many requests (docs/benchmarks.md).
- **PostgreSQL** runs the same functions on asyncpg through SQLAlchemy's greenlet bridge,
  in ``READ COMMITTED`` transactions; read-modify-write paths take row locks. Each process
  holds at most ``pool_size + pool_overflow`` connections, plus one that listens and, in an
  engine, one that extends its leases.

A connection that cannot be had for now (refused, too many connections, the pool exhausted, a
dropped one) is tried again with jittered backoff for up to ``retry_seconds`` before the call
fails with ``Unavailable`` (a 503 with ``retry-after``). So is a whole read, and a write the
server rolled back (a serialization failure or deadlock; write functions may run again, so
they keep no state of their own across calls). A write whose connection broke after it began
is never tried again here, since it may have committed: it fails with ``Unavailable`` at once,
and the caller decides (the engine leaves its lease to lapse and continues from the log).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from agenthost.errors import InDoubt, Unavailable

log = logging.getLogger("agenthost.store")
MIGRATIONS = Path(__file__).parent / "migrations"
READ_THREADS = 4
T = TypeVar("T")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Database:
    """One database and the transaction discipline every repository uses."""

    def __init__(self, url: str, *, pool_size: int = 5, pool_overflow: int = 5, retry_seconds: float = 30.0):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.retry_seconds = retry_seconds
        self._engine: AsyncEngine | None = None
        self._sqlite: sa.Engine | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None
        json = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
        if self.is_sqlite:
            path = url.partition("///")[2]
            memory = not path or path == ":memory:"
            if not memory:
                _create_private(Path(path))
            pool: dict[str, Any] = (
                {"poolclass": StaticPool} if memory else {"pool_size": READ_THREADS + 1, "max_overflow": 0}
            )
            self._sqlite = sa.create_engine(
                "sqlite://" if memory else f"sqlite:///{path}",
                connect_args={"check_same_thread": False},
                pool_reset_on_return=None,  # transactions always end explicitly; reads hold none
                hide_parameters=True,  # bound values are user data: never in a log line or an error
                **pool,
                **json,
            )
            _configure_sqlite(self._sqlite)
            self._readers = ThreadPoolExecutor(1 if memory else READ_THREADS, thread_name_prefix="agenthost-read")
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="agenthost-write")
        else:
            self._engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_overflow,
                pool_timeout=min(10.0, retry_seconds),  # then the wait counts as a transient failure
                pool_pre_ping=True,
                hide_parameters=True,
                # A host that drops packets must fail an attempt well within the retry window.
                connect_args={"timeout": min(10.0, retry_seconds)},
                **json,
            )

    def for_another_loop(self) -> Database:
        """This database as another thread's event loop can use it: SQLite's is thread-safe already; a PostgreSQL
        pool belongs to the loop that made it, so the other loop gets one of its own, of one connection."""
        if self._sqlite is not None:
            return self
        return Database(self.url, pool_size=1, pool_overflow=0, retry_seconds=self.retry_seconds)

    async def run_read(self, read: Callable[[sa.Connection], T]) -> T:
        """Run ``read(conn)``; each statement sees the newest committed data."""
        if self._sqlite is not None:
            engine = self._sqlite

            def run() -> T:
                with engine.connect() as conn:
                    return read(conn)

            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        return await self._retrying(lambda conn: conn.run_sync(read), write=False)

    async def run_write(self, write: Callable[[sa.Connection], T]) -> T:
        """Run ``write(conn)`` in one transaction, committed when it returns and rolled back when it raises."""
        if self._sqlite is not None:
            engine = self._sqlite

            def run() -> T:
                with engine.connect() as conn:
                    conn = conn.execution_options(agenthost_write=True)
                    with conn.begin():
                        return write(conn)

            return await asyncio.get_running_loop().run_in_executor(self._writer, run)
        return await self._retrying(lambda conn: conn.run_sync(write), write=True)

    async def _retrying(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        """Run ``work`` on a PostgreSQL connection (in a transaction when ``write``), retried while that is safe."""
        assert self._engine is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_seconds
        delay = 0.05
        while True:
            began = False
            try:
                async with self._engine.connect() as conn:
                    if not write:
                        return await work(conn)
                    async with conn.begin():
                        began = True
                        return await work(conn)
            except (DBAPIError, OSError, sa.exc.TimeoutError) as exc:
                if not transient(exc):
                    raise
                if began and not _rolled_back(exc):
                    raise InDoubt(
                        f"the database connection broke during a write ({_cause(exc)}); it may have been applied: "
                        "read before you repeat it"
                    ) from exc
                if loop.time() + delay > deadline:
                    raise Unavailable(f"the database is unavailable: {_cause(exc)}; retry the request") from exc
                log.warning("database unavailable (%s); trying again in %.2f s", _cause(exc), delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (in one transaction)."""
        if self._sqlite is None:
            await self.run_write(_upgrade)
            return
        engine = self._sqlite

        def run() -> None:
            # SQLite's procedure for rebuilding a table (how it drops a constraint): foreign keys off
            # outside the transaction, checked before it commits.
            with engine.connect() as conn:
                driver = conn.connection.driver_connection  # pragmas outside SQLAlchemy's transaction
                assert driver is not None
                driver.execute("PRAGMA foreign_keys=OFF")
                try:
                    write = conn.execution_options(agenthost_write=True)
                    with write.begin():
                        _upgrade(write)
                        broken = write.exec_driver_sql("PRAGMA foreign_key_check").first()
                        if broken is not None:
                            raise RuntimeError(f"a migration broke a foreign key of table {broken[0]}")
                finally:
                    driver.execute("PRAGMA foreign_keys=ON")

        await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def ping(self) -> None:
        """Raise ``Unavailable`` when the database cannot be reached now (one try: health reports the present)."""
        try:
            if self._engine is None:
                await self.run_read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
            else:
                async with self._engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise Unavailable(f"database unreachable: {_cause(exc)}") from exc

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        for threads in (self._readers, self._writer):
            if threads is not None:
                threads.shutdown(wait=True)
        if self._sqlite is not None:
            self._sqlite.dispose()


def _create_private(path: Path) -> None:
    """Make a new SQLite file readable by its owner only, from its first byte (SQLite gives its WAL the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


_TRANSIENT_STATES = frozenset(
    {
        "08000", "08001", "08003", "08004", "08006", "08007",  # connection exceptions
        "53300",  # too_many_connections
        "57P01", "57P02", "57P03",  # admin_shutdown, crash_shutdown, cannot_connect_now
        "40001", "40P01",  # serialization_failure, deadlock_detected: the transaction was rolled back
    }
)  # fmt: skip
_ROLLED_BACK_STATES = frozenset({"40001", "40P01"})


def _sqlstate(exc: BaseException) -> str | None:
    original = getattr(exc, "orig", None)
    for candidate in (original, getattr(original, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def transient(exc: BaseException) -> bool:
    """Whether a database failure may go away by itself: a connection that could not be had or broke,
    the server refusing connections for now, the pool exhausted, or a transaction the server rolled back."""
    if isinstance(exc, sa.exc.TimeoutError | OSError):  # the pool's wait ran out; the socket failed
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = _sqlstate(exc)
        if state is not None:
            return state in _TRANSIENT_STATES
        original = exc.orig
        return isinstance(original, OSError | ConnectionError) or type(original).__name__ in (
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "TooManyConnectionsError",
            "CannotConnectNowError",
        )
    return False


def _rolled_back(exc: BaseException) -> bool:
    """A failure inside a transaction that leaves no doubt it did not commit: the server rolled it back."""
    return isinstance(exc, DBAPIError) and _sqlstate(exc) in _ROLLED_BACK_STATES


def _cause(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    return type(original or exc).__name__


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN over from the driver so that reads run in autocommit and writes say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("agenthost_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


MIGRATION_LOCK = 0x61676E74  # any fixed number: PostgreSQL processes starting together migrate one at a time


def _upgrade(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
