"""Environments (layer 1; REFERENCE §4). Names are unique within a workspace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

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


class Environments:
    """Environment CRUD scoped to a workspace."""

    def __init__(self, db: Database):
        self.db = db

    async def create(self, workspace_id: str, fields: JSON) -> JSON:
        env_id, now = new_id("env"), now_us()
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    environments.insert().values(
                        id=env_id,
                        workspace_id=workspace_id,
                        name=fields["name"],
                        fields=fields,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise _name_taken(fields["name"]) from None
        return environment_json(env_id, fields, ts(now), ts(now), None)

    async def row(self, conn: AsyncConnection, workspace_id: str, env_id: str, lock: Lock = None) -> Any:
        """The environment's row inside a caller's transaction; 404 when unknown here."""
        query = sa.select(environments).where(environments.c.id == env_id, environments.c.workspace_id == workspace_id)
        row = (await conn.execute(locked(query, lock, environments))).first()
        if row is None:
            raise NotFound(f"environment {env_id!r} not found")
        return row

    async def get(self, workspace_id: str, env_id: str) -> JSON:
        async with self.db.read() as conn:
            return _render(await self.row(conn, workspace_id, env_id))

    async def list(self, workspace_id: str, page: PageRequest, *, include_archived: bool) -> Page:
        query = sa.select(environments).where(environments.c.workspace_id == workspace_id)
        if not include_archived:
            query = query.where(environments.c.archived_at.is_(None))
        async with self.db.read() as conn:
            return await fetch_page(conn, query, environments.c.id, page, _render, lambda r: r.id)

    async def update(self, workspace_id: str, env_id: str, change: Callable[[JSON], JSON]) -> JSON:
        try:
            async with self.db.write() as conn:
                row = await self.row(conn, workspace_id, env_id, lock="update")
                if row.archived_at is not None:
                    raise InvalidRequest(
                        f"environment {env_id} is archived and cannot be updated", error_code="environment_archived"
                    )
                fields = change(row.fields)
                if fields == row.fields:
                    return _render(row)
                now = now_us()
                await conn.execute(
                    environments.update()
                    .where(environments.c.id == env_id)
                    .values(name=fields["name"], fields=fields, updated_at=now)
                )
        except IntegrityError:
            raise _name_taken(fields["name"]) from None
        return environment_json(env_id, fields, ts(row.created_at), ts(now), None)

    async def archive(self, workspace_id: str, env_id: str) -> JSON:
        async with self.db.write() as conn:
            row = await self.row(conn, workspace_id, env_id, lock="update")
            if row.archived_at is None:
                now = now_us()
                await conn.execute(
                    environments.update().where(environments.c.id == env_id).values(archived_at=now, updated_at=now)
                )
                row = await self.row(conn, workspace_id, env_id)
        return _render(row)

    async def delete(self, workspace_id: str, env_id: str) -> None:
        """Delete an environment no session uses (BEHAVIOUR §4.1)."""
        async with self.db.write() as conn:
            await self.row(conn, workspace_id, env_id, lock="update")
            used = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(sessions).where(sessions.c.environment_id == env_id)
                )
            ).scalar_one()
            if used:
                raise Conflict(
                    f"environment {env_id} is used by {used} session(s); delete them first or archive the environment"
                )
            await conn.execute(environments.delete().where(environments.c.id == env_id))
