"""The sealed tokens of sessions' GitHub repository resources (layer 1).

A repository resource's public part (url, mount path, checkout) lives in ``sessions.resources`` with
the session's other resources; its ``authorization_token`` is write-only and lives here, sealed with
the server key, one row per resource. Only the engine opens it, to clone (engine/repositories.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import JSON
from agenthost.store.secrets import Sealer, SecretUnreadable
from agenthost.store.tables import session_repositories


@dataclass(frozen=True)
class Repository:
    """A repository resource as the engine clones it: its wire object and its token (None: none given)."""

    resource: JSON
    token: str | None
    unreadable: bool = False
    """The sealed token cannot be opened with this server's key (cloned without one, which then fails)."""


def seal_token(sealer: Sealer | None, token: str | None, field: str) -> str | None:
    if token is None:
        return None
    if sealer is None:
        raise InvalidRequest(f"{field}: this server has no secret key, so it cannot keep repository tokens")
    return sealer.seal({"authorization_token": token})


def insert_tokens(conn: sa.Connection, session_id: str, sealed: dict[str, str | None], now: int) -> None:
    """One row per repository resource of a new session (``{resource id: sealed token or None}``)."""
    if sealed:
        conn.execute(
            session_repositories.insert(),
            [
                {"resource_id": rid, "session_id": session_id, "token": token, "created_at": now, "updated_at": now}
                for rid, token in sealed.items()
            ],
        )


def replace_token(conn: sa.Connection, session_id: str, resource_id: str, sealed: str, now: int) -> None:
    """Rotate a repository's token (``resources.update``); a row is made if somehow missing."""
    updated = conn.execute(
        session_repositories.update()
        .where(session_repositories.c.session_id == session_id, session_repositories.c.resource_id == resource_id)
        .values(token=sealed, updated_at=now)
    )
    if updated.rowcount == 0:
        insert_tokens(conn, session_id, {resource_id: sealed}, now)


def delete_tokens(conn: sa.Connection, session_id: str) -> None:
    conn.execute(session_repositories.delete().where(session_repositories.c.session_id == session_id))


def repositories(
    conn: sa.Connection, session_id: str, resources: list[JSON], sealer: Sealer | None
) -> list[Repository]:
    """The session's repository resources in attach order, each with its opened token."""
    sealed = dict(
        conn.execute(
            sa.select(session_repositories.c.resource_id, session_repositories.c.token).where(
                session_repositories.c.session_id == session_id
            )
        ).all()
    )
    found: list[Repository] = []
    for resource in resources:
        if resource["type"] != "github_repository":
            continue
        token = sealed.get(resource["id"])
        if token is None:
            found.append(Repository(resource, None))
            continue
        try:
            opened = sealer.open(token) if sealer is not None else None
        except SecretUnreadable:
            opened = None
        if opened is None:
            found.append(Repository(resource, None, unreadable=True))
        else:
            found.append(Repository(resource, str(opened["authorization_token"])))
    return found
