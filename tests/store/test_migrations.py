"""Migrations run from empty on both databases, and again as a no-op."""

from __future__ import annotations

import sqlalchemy as sa

from agenthost.settings import Settings
from agenthost.store.sql import Store
from agenthost.store.tables import metadata
from tests.conftest import LiveServer, run_async


def test_migrations_build_every_table_and_are_idempotent(server: LiveServer) -> None:
    async def check() -> tuple[set[str], list[str], int]:
        store = Store(Settings(database_url=server.database_url).resolved_database_url())
        try:
            count = sa.text("SELECT count(*) FROM workspaces")
            before = await store.db.run_read(lambda c: c.execute(count).scalar_one())
            await store.open()  # the server already migrated: this must be a no-op

            def inspect(c: sa.Connection) -> tuple[set[str], list[str], int]:
                names = set(sa.inspect(c).get_table_names())
                heads = list(c.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
                return names, heads, c.execute(count).scalar_one()

            names, heads, after = await store.db.run_read(inspect)
            return names, heads, after - before
        finally:
            await store.close()

    names, heads, changed = run_async(check())
    assert set(metadata.tables) <= names
    assert heads == ["0011"]
    assert changed == 0


def test_fresh_sqlite_file_migrates_from_empty(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "fresh.db"

    async def migrate() -> set[str]:
        store = Store(f"sqlite:///{path}")
        try:
            await store.open()
            return await store.db.run_read(lambda c: set(sa.inspect(c).get_table_names()))
        finally:
            await store.close()

    assert set(metadata.tables) <= run_async(migrate())
