"""A session's resources after creation (layer 1): list, add, retrieve, update, remove.

Resources are part of the session row (``sessions.resources``), in the order they were
attached. Only files can be added later; each gets the session's own copy, exactly as at
create (``store/files.py``). The engine mounts them before the session's next tool call.

GitHub repositories are fixed for the session's life: they cannot be added
or removed after create, only their token rotated (``update``), sealed in ``session_repositories``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agenthost.errors import Conflict, InvalidRequest, NotFound
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.schemas.resources import FileResourceParam, check_mounts, check_token, file_resource_json, mount_path
from agenthost.store.db import Database
from agenthost.store.environments import environment_row
from agenthost.store.files import Files, delete_copy, insert_copies
from agenthost.store.paging import Page
from agenthost.store.repositories import replace_token, seal_token
from agenthost.store.secrets import Sealer
from agenthost.store.sessions import refuse_on_worker, session_row
from agenthost.store.tables import sessions


def _key(resource: JSON) -> str:
    return resource.get("id") or resource["memory_store_id"]


def _find(row: Any, resource_id: str) -> JSON:
    for resource in row.resources:
        if resource.get("id") == resource_id:
            return resource
    raise NotFound(f"resource {resource_id!r} not found in session {row.id}")


def _writable(conn: sa.Connection, row: Any) -> None:
    if row.archived_at is not None or row.status == "terminated":
        state = "archived" if row.archived_at else "terminated"
        raise Conflict(f"session {row.id} is {state}; its resources are fixed")
    if environment_row(conn, row.workspace_id, row.environment_id).fields["config"]["type"] == "self_hosted":
        refuse_on_worker(None)


def _store(conn: sa.Connection, session_id: str, resources: list[JSON], now: int) -> None:
    conn.execute(sessions.update().where(sessions.c.id == session_id).values(resources=resources, updated_at=now))


class SessionResources:
    """The resources of sessions, scoped to a workspace."""

    def __init__(self, db: Database, files: Files, sealer: Sealer | None = None):
        self.db = db
        self.files = files
        self.sealer = sealer

    async def list(self, workspace_id: str, session_id: str, *, limit: int | None, after: str | None) -> Page:
        def read(conn: sa.Connection) -> list[JSON]:
            return list(session_row(conn, workspace_id, session_id).resources)

        resources = await self.db.run_read(read)
        if after is not None:
            keys = [_key(resource) for resource in resources]
            # Ids sort by creation; a resource removed since the last page still marks the place.
            start = keys.index(after) + 1 if after in keys else sum(key <= after for key in keys)
            resources = resources[start:]
        if limit is None or len(resources) <= limit:
            return Page(resources)
        return Page(resources[:limit], next_key=_key(resources[limit - 1]))

    async def get(self, workspace_id: str, session_id: str, resource_id: str) -> JSON:
        return await self.db.run_read(lambda conn: _find(session_row(conn, workspace_id, session_id), resource_id))

    async def add(self, workspace_id: str, session_id: str, param: FileResourceParam) -> JSON:
        await self.db.run_read(lambda conn: _writable(conn, session_row(conn, workspace_id, session_id)))
        path = mount_path(param.file_id, param.mount_path, "mount_path")
        copies = await self.files.copy_for_session(workspace_id, {"file_id": param.file_id})
        now = now_us()
        resource = file_resource_json(new_id("sesrsc"), copies["file_id"][0], path, ts(now), ts(now))

        def write(conn: sa.Connection) -> JSON:
            row = session_row(conn, workspace_id, session_id, lock="update")
            _writable(conn, row)
            resources = [*row.resources, resource]
            check_mounts(resources, "mount_path")
            insert_copies(conn, workspace_id, session_id, copies, now)
            _store(conn, session_id, resources, now)
            return resource

        try:
            return await self.db.run_write(write)
        except BaseException:
            await self.files.forget([copies["file_id"][0]])
            raise

    async def update(self, workspace_id: str, session_id: str, resource_id: str, token: str) -> JSON:
        """Rotate a repository's token: file resources have nothing to update.

        The new token is used from the next clone on; a repository already cloned stays as it is.
        """
        resource = await self.get(workspace_id, session_id, resource_id)
        if resource["type"] != "github_repository":
            raise InvalidRequest(
                f"resource {resource_id} is a {resource['type']} resource; only github_repository resources can be "
                "updated (authorization_token)"
            )
        check_token(token, "authorization_token")
        sealed = seal_token(self.sealer, token, "authorization_token")
        assert sealed is not None

        def write(conn: sa.Connection) -> JSON:
            row = session_row(conn, workspace_id, session_id, lock="update")
            _find(row, resource_id)
            _writable(conn, row)
            now = now_us()
            updated: JSON = {}
            resources: list[JSON] = []
            for r in row.resources:
                if r.get("id") == resource_id:
                    r = updated = {**r, "updated_at": ts(now)}
                resources.append(r)
            replace_token(conn, session_id, resource_id, sealed, now)
            _store(conn, session_id, resources, now)
            return updated

        return await self.db.run_write(write)

    async def delete(self, workspace_id: str, session_id: str, resource_id: str) -> None:
        def write(conn: sa.Connection) -> str:
            row = session_row(conn, workspace_id, session_id, lock="update")
            resource = _find(row, resource_id)
            if resource["type"] == "github_repository":
                raise InvalidRequest(
                    f"resource {resource_id} is a github_repository resource; repositories are fixed for the "
                    "session's life (only their authorization_token can be updated)"
                )
            _writable(conn, row)
            resources = [r for r in row.resources if r.get("id") != resource_id]
            now = now_us()
            _store(conn, session_id, resources, now)
            delete_copy(conn, session_id, resource["file_id"])
            return str(resource["file_id"])

        await self.files.forget([await self.db.run_write(write)])
