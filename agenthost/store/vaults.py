"""Vaults and credentials (layer 1).

Writes to a vault's credentials lock the vault's row, so the rules that span credentials
(one active credential per server URL or variable name, at most 20 active) hold under
concurrent requests on both databases. Secrets are sealed before they reach a row and are
opened only by :meth:`Vaults.resolve`, for the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from agenthost.errors import Conflict, InvalidRequest, NotFound
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, check_metadata, now_us, patch_metadata
from agenthost.schemas.vaults import (
    MAX_CREDENTIALS_PER_VAULT,
    CredentialCreate,
    CredentialUpdate,
    credential_json,
    credential_parts,
    normalize_url,
    update_parts,
    vault_json,
)
from agenthost.store.db import Database
from agenthost.store.paging import Lock, Page, PageRequest, fetch_page, locked
from agenthost.store.secrets import Sealer, SecretUnreadable
from agenthost.store.tables import vault_credentials, vaults


def vault_row(conn: sa.Connection, workspace_id: str, vault_id: str, lock: Lock = None) -> Any:
    query = sa.select(vaults).where(vaults.c.id == vault_id, vaults.c.workspace_id == workspace_id)
    row = conn.execute(locked(query, lock, vaults)).first()
    if row is None:
        raise NotFound(f"vault {vault_id!r} not found")
    return row


def _credential_row(conn: sa.Connection, vault_id: str, credential_id: str) -> Any:
    query = sa.select(vault_credentials).where(
        vault_credentials.c.id == credential_id, vault_credentials.c.vault_id == vault_id
    )
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"credential {credential_id!r} not found in vault {vault_id}")
    return row


def _active_clash(conn: sa.Connection, vault_id: str, match_key: str, besides: str | None = None) -> None:
    query = sa.select(vault_credentials.c.id).where(
        vault_credentials.c.vault_id == vault_id,
        vault_credentials.c.match_key == match_key,
        vault_credentials.c.archived_at.is_(None),
    )
    if besides is not None:
        query = query.where(vault_credentials.c.id != besides)
    clash = conn.execute(query).scalar()
    if clash is not None:
        kind, _, key = match_key.partition(":")
        field = "auth.mcp_server_url" if kind == "mcp" else "auth.secret_name"
        raise Conflict(f"{field}: active credential {clash} of this vault already has {key}")


def check_vaults(conn: sa.Connection, workspace_id: str, vault_ids: list[str], field: str = "vault_ids") -> None:
    """Each vault exists here and is not archived (for a new session)."""
    for index, vault_id in enumerate(vault_ids):
        try:
            row = vault_row(conn, workspace_id, vault_id)
        except NotFound as exc:
            raise NotFound(f"{field}[{index}]: {exc.message}") from None
        if row.archived_at is not None:
            raise InvalidRequest(f"{field}[{index}]: vault {vault_id} is archived; new sessions cannot use it")


@dataclass(frozen=True)
class Credential:
    """An active credential with its secret opened, for the engine (never rendered anywhere)."""

    id: str
    vault_id: str
    auth: JSON
    secret: JSON | None
    """None when the secret cannot be opened (sealed with another key)."""


class Vaults:
    """Vault and credential CRUD scoped to a workspace, and credential resolution for sessions."""

    def __init__(self, db: Database, sealer: Sealer | None):
        self.db = db
        self._sealer = sealer

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            raise InvalidRequest("vaults: this server has no secret key")
        return self._sealer

    # -- vaults ----------------------------------------------------------------------------------

    async def create(self, workspace_id: str, display_name: str, metadata: dict[str, str]) -> JSON:
        check_metadata(metadata)
        now = now_us()
        values = {
            "id": new_id("vlt"),
            "workspace_id": workspace_id,
            "display_name": display_name,
            "metadata": metadata,
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }
        await self.db.run_write(lambda conn: conn.execute(vaults.insert().values(**values)))
        return vault_json(SimpleNamespace(**values))

    async def get(self, workspace_id: str, vault_id: str) -> JSON:
        return await self.db.run_read(lambda conn: vault_json(vault_row(conn, workspace_id, vault_id)))

    async def list(self, workspace_id: str, page: PageRequest, *, include_archived: bool) -> Page:
        query = sa.select(vaults).where(vaults.c.workspace_id == workspace_id)
        if not include_archived:
            query = query.where(vaults.c.archived_at.is_(None))
        return await self.db.run_read(lambda conn: fetch_page(conn, query, vaults.c.id, page, vault_json, _id))

    async def update(
        self, workspace_id: str, vault_id: str, display_name: str | None, metadata: dict[str, str | None] | None
    ) -> JSON:
        def write(conn: sa.Connection) -> JSON:
            row = vault_row(conn, workspace_id, vault_id, lock="update")
            if row.archived_at is not None:
                raise InvalidRequest(f"vault {vault_id} is archived and cannot be changed")
            values: JSON = {}
            if display_name is not None and display_name != row.display_name:
                values["display_name"] = display_name
            if metadata is not None:
                patched = patch_metadata(row.metadata, metadata)
                if patched != row.metadata:
                    values["metadata"] = patched
            if values:
                conn.execute(vaults.update().where(vaults.c.id == vault_id).values(updated_at=now_us(), **values))
                row = vault_row(conn, workspace_id, vault_id)
            return vault_json(row)

        return await self.db.run_write(write)

    async def archive(self, workspace_id: str, vault_id: str) -> JSON:
        """Archive the vault and every credential in it, purging their secrets."""

        def write(conn: sa.Connection) -> JSON:
            row = vault_row(conn, workspace_id, vault_id, lock="update")
            if row.archived_at is None:
                now = now_us()
                conn.execute(vaults.update().where(vaults.c.id == vault_id).values(archived_at=now, updated_at=now))
                conn.execute(
                    vault_credentials.update()
                    .where(vault_credentials.c.vault_id == vault_id, vault_credentials.c.archived_at.is_(None))
                    .values(archived_at=now, updated_at=now, secret=None)
                )
                row = vault_row(conn, workspace_id, vault_id)
            return vault_json(row)

        return await self.db.run_write(write)

    async def delete(self, workspace_id: str, vault_id: str) -> None:
        def write(conn: sa.Connection) -> None:
            vault_row(conn, workspace_id, vault_id, lock="update")
            conn.execute(vault_credentials.delete().where(vault_credentials.c.vault_id == vault_id))
            conn.execute(vaults.delete().where(vaults.c.id == vault_id))

        await self.db.run_write(write)

    # -- credentials -----------------------------------------------------------------------------

    async def create_credential(self, workspace_id: str, vault_id: str, body: CredentialCreate) -> JSON:
        check_metadata(body.metadata)
        public, secret, match_key = credential_parts(body.auth)
        sealed = self.sealer.seal(secret)

        def write(conn: sa.Connection) -> JSON:
            row = vault_row(conn, workspace_id, vault_id, lock="update")
            if row.archived_at is not None:
                raise InvalidRequest(f"vault {vault_id} is archived; it takes no new credentials")
            active = conn.execute(
                sa.select(sa.func.count())
                .select_from(vault_credentials)
                .where(vault_credentials.c.vault_id == vault_id, vault_credentials.c.archived_at.is_(None))
            ).scalar_one()
            if active >= MAX_CREDENTIALS_PER_VAULT:
                raise InvalidRequest(f"vault {vault_id} already holds {MAX_CREDENTIALS_PER_VAULT} active credentials")
            _active_clash(conn, vault_id, match_key)
            now = now_us()
            values = {
                "id": new_id("vcrd"),
                "vault_id": vault_id,
                "display_name": body.display_name,
                "metadata": body.metadata,
                "auth": public,
                "secret": sealed,
                "match_key": match_key,
                "created_at": now,
                "updated_at": now,
                "archived_at": None,
            }
            conn.execute(vault_credentials.insert().values(**values))
            return credential_json(SimpleNamespace(**values))

        return await self.db.run_write(write)

    async def get_credential(self, workspace_id: str, vault_id: str, credential_id: str) -> JSON:
        def read(conn: sa.Connection) -> JSON:
            vault_row(conn, workspace_id, vault_id)
            return credential_json(_credential_row(conn, vault_id, credential_id))

        return await self.db.run_read(read)

    async def list_credentials(
        self, workspace_id: str, vault_id: str, page: PageRequest, *, include_archived: bool
    ) -> Page:
        query = sa.select(vault_credentials).where(vault_credentials.c.vault_id == vault_id)
        if not include_archived:
            query = query.where(vault_credentials.c.archived_at.is_(None))

        def read(conn: sa.Connection) -> Page:
            vault_row(conn, workspace_id, vault_id)
            return fetch_page(conn, query, vault_credentials.c.id, page, credential_json, _id)

        return await self.db.run_read(read)

    async def update_credential(
        self, workspace_id: str, vault_id: str, credential_id: str, body: CredentialUpdate
    ) -> JSON:
        def write(conn: sa.Connection) -> JSON:
            vault_row(conn, workspace_id, vault_id, lock="update")
            row = _credential_row(conn, vault_id, credential_id)
            if row.archived_at is not None:
                raise InvalidRequest(f"credential {credential_id} is archived and cannot be changed")
            values: JSON = {}
            if body.auth is not None:
                secret = self.sealer.open(row.secret) if row.secret else {}
                public, new_secret = update_parts(body.auth, row.auth, secret)
                if public != row.auth:
                    values["auth"] = public
                if new_secret != secret:
                    values["secret"] = self.sealer.seal(new_secret)
            if body.given("display_name") and body.display_name != row.display_name:
                values["display_name"] = body.display_name
            if body.metadata is not None:
                patched = patch_metadata(row.metadata, body.metadata)
                if patched != row.metadata:
                    values["metadata"] = patched
            if values:
                conn.execute(
                    vault_credentials.update()
                    .where(vault_credentials.c.id == credential_id)
                    .values(updated_at=now_us(), **values)
                )
                row = _credential_row(conn, vault_id, credential_id)
            return credential_json(row)

        try:
            return await self.db.run_write(write)
        except SecretUnreadable:
            raise InvalidRequest(
                f"credential {credential_id}: its secret was sealed with another server key; archive it and create "
                "another"
            ) from None

    async def archive_credential(self, workspace_id: str, vault_id: str, credential_id: str) -> JSON:
        """Archive a credential: its secret is purged and its URL or name is free again."""

        def write(conn: sa.Connection) -> JSON:
            vault_row(conn, workspace_id, vault_id, lock="update")
            row = _credential_row(conn, vault_id, credential_id)
            if row.archived_at is None:
                now = now_us()
                conn.execute(
                    vault_credentials.update()
                    .where(vault_credentials.c.id == credential_id)
                    .values(archived_at=now, updated_at=now, secret=None)
                )
                row = _credential_row(conn, vault_id, credential_id)
            return credential_json(row)

        return await self.db.run_write(write)

    async def delete_credential(self, workspace_id: str, vault_id: str, credential_id: str) -> None:
        def write(conn: sa.Connection) -> None:
            vault_row(conn, workspace_id, vault_id, lock="update")
            _credential_row(conn, vault_id, credential_id)
            conn.execute(vault_credentials.delete().where(vault_credentials.c.id == credential_id))

        await self.db.run_write(write)

    async def credential_with_secret(self, workspace_id: str, vault_id: str, credential_id: str) -> Credential:
        """One credential with its secret opened (for validation)."""

        def read(conn: sa.Connection) -> Any:
            vault_row(conn, workspace_id, vault_id)
            return _credential_row(conn, vault_id, credential_id)

        row = await self.db.run_read(read)
        return self._open(row)

    async def store_refreshed(
        self, credential_id: str, access_token: str, expires_at: int | None, refresh: str | None
    ) -> None:
        """Keep the tokens an OAuth refresh returned (the credential stays as it was if it changed meanwhile)."""

        def write(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(vault_credentials).where(vault_credentials.c.id == credential_id)).first()
            if row is None or row.archived_at is not None or row.secret is None:
                return
            secret = self.sealer.open(row.secret)
            secret["access_token"] = access_token
            if refresh:
                secret["refresh_token"] = refresh
            auth = {**row.auth, "expires_at": expires_at}
            conn.execute(
                vault_credentials.update()
                .where(vault_credentials.c.id == credential_id)
                .values(secret=self.sealer.seal(secret), auth=auth, updated_at=now_us())
            )

        await self.db.run_write(write)

    # -- sessions --------------------------------------------------------------------------------

    async def resolve(self, workspace_id: str, vault_ids: list[str]) -> list[Credential]:
        """The active credentials of these vaults, vault by vault in the given order (first match wins)."""
        if not vault_ids:
            return []

        def read(conn: sa.Connection) -> list[Any]:
            rows = conn.execute(
                sa.select(vault_credentials)
                .join(vaults, vaults.c.id == vault_credentials.c.vault_id)
                .where(
                    vaults.c.workspace_id == workspace_id,
                    vaults.c.id.in_(vault_ids),
                    vaults.c.archived_at.is_(None),
                    vault_credentials.c.archived_at.is_(None),
                )
                .order_by(vault_credentials.c.id)
            ).all()
            order = {vault_id: index for index, vault_id in enumerate(vault_ids)}
            return sorted(rows, key=lambda row: order[row.vault_id])

        return [self._open(row) for row in await self.db.run_read(read)]

    def _open(self, row: Any) -> Credential:
        try:
            secret = self.sealer.open(row.secret) if row.secret else None
        except SecretUnreadable:
            secret = None
        return Credential(row.id, row.vault_id, dict(row.auth), secret)


def _id(row: Any) -> str:
    return str(row.id)


def match_mcp(credentials: list[Credential], url: str) -> Credential | None:
    """The first credential for this MCP server URL (normalised both sides), or None."""
    try:
        wanted = normalize_url(url)
    except InvalidRequest:
        return None
    for credential in credentials:
        server = credential.auth.get("mcp_server_url")
        if server is not None and normalize_url(server) == wanted:
            return credential
    return None
