"""Environments (layer 1). Names are unique within a workspace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agenthost.errors import Conflict, InvalidRequest, NotFound
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.schemas.environments import environment_json
from agenthost.store.db import Database
from agenthost.store.paging import Lock, Page, PageRequest, fetch_page, locked
from agenthost.store.tables import environments, sessions


def _render(row: Any) -> JSON:
    return environment_json(row.id, row.fields, ts(row.created_at), ts(row.updated_at), ts(row.archived_at))


def _name_taken(name: str) -> Conflict:
    return Conflict(f"name: an environment named {name!r} already exists")


_BY_ID = sa.select(environments).where(
    environments.c.id == sa.bindparam("id"), environments.c.workspace_id == sa.bindparam("workspace_id")
)
_BY_ID_LOCKED = {lock: locked(_BY_ID, lock, environments) for lock in (None, "update", "share")}


def environment_row(conn: sa.Connection, workspace_id: str, env_id: str, lock: Lock = None) -> Any:
    """The environment's row inside a caller's transaction; 404 when unknown here."""
    row = conn.execute(_BY_ID_LOCKED[lock], {"id": env_id, "workspace_id": workspace_id}).first()
    if row is None:
        raise NotFound(f"environment {env_id!r} not found")
    return row


class Environments:
    """Environment CRUD scoped to a workspace."""

    def __init__(self, db: Database):
        self.db = db

    async def create(self, workspace_id: str, fields: JSON) -> JSON:
        env_id, now = new_id("env"), now_us()
        values = {
            "id": env_id,
            "workspace_id": workspace_id,
            "name": fields["name"],
            "fields": fields,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.db.run_write(lambda conn: conn.execute(environments.insert().values(**values)))
        except IntegrityError:
            raise _name_taken(fields["name"]) from None
        return environment_json(env_id, fields, ts(now), ts(now), None)

    async def get(self, workspace_id: str, env_id: str) -> JSON:
        return await self.db.run_read(lambda conn: _render(environment_row(conn, workspace_id, env_id)))

    async def list(self, workspace_id: str, page: PageRequest, *, include_archived: bool) -> Page:
        query = sa.select(environments).where(environments.c.workspace_id == workspace_id)
        if not include_archived:
            query = query.where(environments.c.archived_at.is_(None))
        return await self.db.run_read(
            lambda conn: fetch_page(conn, query, environments.c.id, page, _render, lambda r: r.id)
        )

    async def update(self, workspace_id: str, env_id: str, change: Callable[[JSON], JSON]) -> JSON:
        def write(conn: sa.Connection) -> JSON:
            row = environment_row(conn, workspace_id, env_id, lock="update")
            if row.archived_at is not None:
                raise InvalidRequest(
                    f"environment {env_id} is archived and cannot be updated", error_code="environment_archived"
                )
            fields = change(row.fields)
            if fields == row.fields:
                return _render(row)
            now = now_us()
            names.append(fields["name"])
            conn.execute(
                environments.update()
                .where(environments.c.id == env_id)
                .values(name=fields["name"], fields=fields, updated_at=now)
            )
            return environment_json(env_id, fields, ts(row.created_at), ts(now), None)

        names: list[str] = []
        try:
            return await self.db.run_write(write)
        except IntegrityError:
            raise _name_taken(names[-1]) from None

    async def archive(self, workspace_id: str, env_id: str) -> JSON:
        def write(conn: sa.Connection) -> JSON:
            row = environment_row(conn, workspace_id, env_id, lock="update")
            if row.archived_at is None:
                now = now_us()
                conn.execute(
                    environments.update().where(environments.c.id == env_id).values(archived_at=now, updated_at=now)
                )
                row = environment_row(conn, workspace_id, env_id)
            return _render(row)

        return await self.db.run_write(write)

    async def delete(self, workspace_id: str, env_id: str) -> None:
        """Delete an environment no session uses."""

        def write(conn: sa.Connection) -> None:
            environment_row(conn, workspace_id, env_id, lock="update")
            count = sa.select(sa.func.count()).select_from(sessions).where(sessions.c.environment_id == env_id)
            used = conn.execute(count).scalar_one()
            if used:
                raise Conflict(
                    f"environment {env_id} is used by {used} session(s); delete them first or archive the environment"
                )
            conn.execute(environments.delete().where(environments.c.id == env_id))

        await self.db.run_write(write)
