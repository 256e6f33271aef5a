"""Workspaces and API keys (layer 1). Only SHA-256 hashes of keys are stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from agenthost.errors import InvalidRequest, NotFound
from agenthost.ids import new_id
from agenthost.schemas.common import now_us
from agenthost.store.db import Database
from agenthost.store.tables import api_keys, environments, workspaces

DEFAULT_WORKSPACE = "default"
KEY_PREFIX = "sk-ah-"
STATIC_KEY_ID = "apikey_static"
"""The id recorded for the key configured by ``AGENTHOST_API_KEY``, which has no row (memory versions' authors)."""


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listed: never the key itself, only its last characters."""

    id: str
    workspace: str
    hint: str
    created_at: int
    revoked_at: int | None
    environment_id: str | None = None


@dataclass(frozen=True)
class Caller:
    """Who a key speaks for: a workspace, and for an environment key, the one environment it serves.

    ``key_id`` is the key's own id (``apikey_...``; :data:`STATIC_KEY_ID` for the configured key).
    """

    workspace_id: str
    workspace: str
    environment_id: str | None = None
    key_id: str = STATIC_KEY_ID


class Keys:
    """Workspaces and the keys that authenticate to them."""

    def __init__(self, db: Database):
        self.db = db

    async def workspace_id(self, name: str, *, create: bool = True) -> str:
        """The id of the workspace called ``name``, created on first use when ``create``."""
        query = sa.select(workspaces.c.id).where(workspaces.c.name == name)
        found = await self.db.run_read(lambda conn: conn.execute(query).scalar())
        if found is not None:
            return str(found)
        if not create:
            raise NotFound(f"no workspace named {name!r}")

        def write(conn: sa.Connection) -> str:
            found = conn.execute(query).scalar()
            if found is not None:
                return str(found)
            ws_id = new_id("wrkspc")
            conn.execute(workspaces.insert().values(id=ws_id, name=name, created_at=now_us()))
            return ws_id

        return await self.db.run_write(write)

    async def create(self, workspace: str = DEFAULT_WORKSPACE) -> tuple[str, KeyInfo]:
        """Make a new key for ``workspace``; the plaintext is returned once and never stored."""
        return await self._insert(await self.workspace_id(workspace), workspace, None)

    async def create_for_environment(self, environment_id: str) -> tuple[str, KeyInfo]:
        """Make an environment key: it acts only as the worker of this self-hosted environment."""
        query = (
            sa.select(environments.c.workspace_id, environments.c.fields, workspaces.c.name)
            .join(workspaces, workspaces.c.id == environments.c.workspace_id)
            .where(environments.c.id == environment_id)
        )
        found = await self.db.run_read(lambda conn: conn.execute(query).first())
        if found is None:
            raise NotFound(f"no environment {environment_id!r}")
        if found.fields["config"]["type"] != "self_hosted":
            raise InvalidRequest(f"environment {environment_id} is not self_hosted; only those have workers")
        return await self._insert(found.workspace_id, found.name, environment_id)

    async def _insert(self, ws_id: str, workspace: str, environment_id: str | None) -> tuple[str, KeyInfo]:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        info = KeyInfo(new_id("apikey"), workspace, key[-4:], now_us(), None, environment_id)
        row = {
            "id": info.id,
            "workspace_id": ws_id,
            "key_hash": hash_key(key),
            "hint": info.hint,
            "created_at": info.created_at,
            "environment_id": environment_id,
        }
        await self.db.run_write(lambda conn: conn.execute(api_keys.insert().values(**row)))
        return key, info

    async def list(self) -> list[KeyInfo]:
        """Every key, oldest first, revoked ones included."""
        query = (
            sa.select(api_keys, workspaces.c.name)
            .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
            .order_by(api_keys.c.id)
        )
        rows = await self.db.run_read(lambda conn: conn.execute(query).all())
        return [KeyInfo(r.id, r.name, r.hint, r.created_at, r.revoked_at, r.environment_id) for r in rows]

    async def revoke(self, key_id: str) -> None:
        """Revoke a key by id; 404 when unknown."""
        query = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now_us())
        )
        revoked = await self.db.run_write(lambda conn: conn.execute(query).rowcount)
        if revoked == 0:
            raise NotFound(f"no active API key with id {key_id!r}")

    async def any_exist(self) -> bool:
        """True when at least one key, active or revoked, was ever made."""
        query = sa.select(sa.func.count()).select_from(api_keys)
        return await self.db.run_read(lambda conn: conn.execute(query).scalar_one()) > 0

    async def authenticate(self, key: str) -> Caller | None:
        """Who a key speaks for, or None when it is unknown or revoked."""
        query = (
            sa.select(workspaces.c.id, workspaces.c.name, api_keys.c.environment_id, api_keys.c.id.label("key_id"))
            .join(api_keys, api_keys.c.workspace_id == workspaces.c.id)
            .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
        )
        found = await self.db.run_read(lambda conn: conn.execute(query).first())
        if found is None:
            return None
        return Caller(str(found.id), str(found.name), found.environment_id, str(found.key_id))
