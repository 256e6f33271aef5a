"""Agents and their versions (layer 1).

The ``agents`` row holds the current version number; each version's whole config
is a row of ``agent_versions``. An update writes a new version only when the config
changed, under a compare-and-set on the version number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from agenthost.errors import Conflict, InvalidRequest, NotFound
from agenthost.ids import new_id
from agenthost.schemas.agents import agent_json
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.store.db import Database
from agenthost.store.paging import Lock, Page, PageRequest, created_filter, fetch_page, locked
from agenthost.store.tables import agent_versions, agents

_COLUMNS = (
    agents.c.id,
    agent_versions.c.version,
    agent_versions.c.config,
    agents.c.created_at,
    agent_versions.c.created_at.label("version_created_at"),
    agents.c.archived_at,
)


def _render(row: Any) -> JSON:
    return agent_json(
        row.id, row.version, row.config, ts(row.created_at), ts(row.version_created_at), ts(row.archived_at)
    )


def _exists(conn: sa.Connection, workspace_id: str, agent_id: str) -> bool:
    query = sa.select(agents.c.id).where(agents.c.id == agent_id, agents.c.workspace_id == workspace_id)
    return conn.execute(query).first() is not None


def agent_row(conn: sa.Connection, workspace_id: str, agent_id: str, version: int | None, lock: Lock = None) -> Any:
    """One version of an agent (the current one when ``version`` is None); 404 when unknown here."""
    if lock is not None:
        # Lock the agents row on its own first: with the join in a FOR UPDATE, PostgreSQL's re-check
        # after a concurrent update compares the new version with the old joined row and drops it.
        only_agent = sa.select(agents.c.id).where(agents.c.id == agent_id, agents.c.workspace_id == workspace_id)
        conn.execute(locked(only_agent, lock, agents))
    query = (
        sa.select(*_COLUMNS)
        .join(agent_versions, agent_versions.c.agent_id == agents.c.id)
        .where(agents.c.id == agent_id, agents.c.workspace_id == workspace_id)
        .where(agent_versions.c.version == (version if version is not None else agents.c.version))
    )
    row = conn.execute(query).first()
    if row is None:
        if version is not None and _exists(conn, workspace_id, agent_id):
            raise NotFound(f"agent {agent_id} has no version {version}")
        raise NotFound(f"agent {agent_id!r} not found")
    return row


def agent_for_session(conn: sa.Connection, workspace_id: str, agent_id: str, version: int | None) -> JSON:
    """The agent (wire form) a new session snapshots, share-locked inside the caller's transaction."""
    return _render(agent_row(conn, workspace_id, agent_id, version, lock="share"))


class Agents:
    """Agent CRUD scoped to a workspace."""

    def __init__(self, db: Database):
        self.db = db

    async def create(self, workspace_id: str, config: JSON) -> JSON:
        agent_id, now = new_id("agent"), now_us()

        def write(conn: sa.Connection) -> None:
            conn.execute(
                agents.insert().values(
                    id=agent_id, workspace_id=workspace_id, version=1, created_at=now, updated_at=now
                )
            )
            conn.execute(agent_versions.insert().values(agent_id=agent_id, version=1, config=config, created_at=now))

        await self.db.run_write(write)
        return agent_json(agent_id, 1, config, ts(now), ts(now), None)

    async def get(self, workspace_id: str, agent_id: str, version: int | None = None) -> JSON:
        return await self.db.run_read(lambda conn: _render(agent_row(conn, workspace_id, agent_id, version)))

    async def list(
        self, workspace_id: str, page: PageRequest, *, include_archived: bool, created: dict[str, int]
    ) -> Page:
        query = (
            sa.select(*_COLUMNS)
            .join(
                agent_versions,
                sa.and_(agent_versions.c.agent_id == agents.c.id, agent_versions.c.version == agents.c.version),
            )
            .where(agents.c.workspace_id == workspace_id)
        )
        if not include_archived:
            query = query.where(agents.c.archived_at.is_(None))
        query = created_filter(query, agents.c.created_at, created)
        return await self.db.run_read(lambda conn: fetch_page(conn, query, agents.c.id, page, _render, lambda r: r.id))

    async def versions(self, workspace_id: str, agent_id: str, page: PageRequest) -> Page:
        query = (
            sa.select(*_COLUMNS)
            .join(agent_versions, agent_versions.c.agent_id == agents.c.id)
            .where(agents.c.id == agent_id, agents.c.workspace_id == workspace_id)
        )

        def read(conn: sa.Connection) -> Page:
            if not _exists(conn, workspace_id, agent_id):
                raise NotFound(f"agent {agent_id!r} not found")
            return fetch_page(conn, query, agent_versions.c.version, page, _render, lambda r: r.version)

        return await self.db.run_read(read)

    async def update(
        self, workspace_id: str, agent_id: str, expected_version: int | None, change: Callable[[JSON], JSON]
    ) -> JSON:
        """Apply ``change`` to the current config; store a new version only when it differs."""

        def write(conn: sa.Connection) -> JSON:
            row = agent_row(conn, workspace_id, agent_id, None, lock="update")
            if row.archived_at is not None:
                raise InvalidRequest(f"agent {agent_id} is archived and cannot be updated")
            if expected_version is not None and expected_version != row.version:
                raise Conflict(
                    f"version: agent {agent_id} is at version {row.version}, not {expected_version}; "
                    "retrieve it and apply the change again"
                )
            config = change(row.config)
            if config == row.config:
                return _render(row)
            version, now = row.version + 1, now_us()
            conn.execute(agents.update().where(agents.c.id == agent_id).values(version=version, updated_at=now))
            conn.execute(
                agent_versions.insert().values(agent_id=agent_id, version=version, config=config, created_at=now)
            )
            return agent_json(agent_id, version, config, ts(row.created_at), ts(now), None)

        return await self.db.run_write(write)

    async def archive(self, workspace_id: str, agent_id: str) -> JSON:
        def write(conn: sa.Connection) -> JSON:
            row = agent_row(conn, workspace_id, agent_id, None, lock="update")
            if row.archived_at is None:
                conn.execute(agents.update().where(agents.c.id == agent_id).values(archived_at=now_us()))
                row = agent_row(conn, workspace_id, agent_id, None)
            return _render(row)

        return await self.db.run_write(write)
