"""Migrations run from empty on both databases, and again as a no-op."""

from __future__ import annotations

from typing import Any

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
    assert heads == ["0012"]
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


def test_environment_names_migrate_to_unique_among_active_ones_keeping_rows_and_references(tmp_path: object) -> None:
    """0012 rebuilds the environments table on SQLite: its rows stay, and sessions still reference it."""
    from pathlib import Path

    from alembic import command

    from agenthost.store.db import alembic_config

    path = Path(str(tmp_path)) / "old.db"

    def at_0011(conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0011")
        conn.execute(sa.text("INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'w', 1)"))
        conn.execute(
            sa.text(
                "INSERT INTO environments (id, workspace_id, name, fields, created_at, updated_at, archived_at) "
                "VALUES ('env_1', 'ws_1', 'n', '{}', 1, 1, 5)"
            )
        )

    async def migrate() -> tuple[list[Any], list[Any], str]:
        store = Store(f"sqlite:///{path}")
        try:
            await store.db.run_write(at_0011)
            await store.open()

            def look(c: sa.Connection) -> tuple[list[Any], list[Any], str]:
                assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again after the rebuild
                rows = [tuple(r) for r in c.execute(sa.text("SELECT id, name, archived_at FROM environments"))]
                references = [r[2] for r in c.exec_driver_sql("PRAGMA foreign_key_list(sessions)")]
                c.execute(
                    sa.text(
                        "INSERT INTO environments (id, workspace_id, name, fields, created_at, updated_at) "
                        "VALUES ('env_2', 'ws_1', 'n', '{}', 2, 2)"
                    )
                )
                try:
                    c.execute(
                        sa.text(
                            "INSERT INTO environments (id, workspace_id, name, fields, created_at, updated_at) "
                            "VALUES ('env_3', 'ws_1', 'n', '{}', 3, 3)"
                        )
                    )
                except sa.exc.IntegrityError as exc:
                    return rows, references, type(exc).__name__
                return rows, references, "no error"

            return await store.db.run_write(look)
        finally:
            await store.close()

    rows, references, second_active = run_async(migrate())
    assert rows == [("env_1", "n", 5)]
    assert "environments" in references
    assert second_active == "IntegrityError"
