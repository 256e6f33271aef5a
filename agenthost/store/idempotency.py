"""Idempotency keys (layer 1; issue #5 point 5): a retried request gets the first one's answer.

A request with a key first *claims* it (an insert that only one writer can win), then
does its work, then stores its answer on the claim. A retry with the same key and the
same request is answered from the store; with a different request it is refused. A
claim whose answer never came (the server died mid-request) is taken over after
``STALE_US``, and keys are forgotten after ``TTL_US``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agenthost.schemas.common import now_us
from agenthost.store.db import Database
from agenthost.store.tables import idempotency_keys as table

TTL_US = 24 * 3600 * 1_000_000
STALE_US = 60 * 1_000_000


@dataclass(frozen=True)
class Claim:
    """What a key says about a request: ``new`` (do the work), or an earlier request's state."""

    state: str  # "new" | "replay" | "mismatch" | "in_progress"
    status: int | None = None
    body: str | None = None
    token: int = 0
    """For a ``new`` claim: its timestamp, which only the claimant's complete/release match."""


class Idempotency:
    def __init__(self, db: Database):
        self.db = db

    async def claim(self, workspace_id: str, key: str, fingerprint: str) -> Claim:
        now = now_us()
        where = sa.and_(table.c.workspace_id == workspace_id, table.c.key == key)

        def claim(conn: sa.Connection) -> Claim:
            conn.execute(table.delete().where(table.c.created_at < now - TTL_US))
            row = conn.execute(sa.select(table).where(where)).first()
            if row is None:
                values = {"workspace_id": workspace_id, "key": key, "fingerprint": fingerprint, "created_at": now}
                try:
                    with conn.begin_nested():
                        conn.execute(table.insert().values(**values))
                except IntegrityError:  # another request with this key claimed it a moment ago
                    return Claim("in_progress")
                return Claim("new", token=now)
            if row.fingerprint != fingerprint:
                return Claim("mismatch")
            if row.status is not None:
                return Claim("replay", row.status, row.body)
            if row.created_at < now - STALE_US:  # its server died before answering: take it over, once
                taken = conn.execute(
                    table.update()
                    .where(where, table.c.created_at == row.created_at, table.c.status.is_(None))
                    .values(created_at=now)
                ).rowcount
                return Claim("new", token=now) if taken == 1 else Claim("in_progress")
            return Claim("in_progress")

        return await self.db.run_write(claim)

    def _mine(self, workspace_id: str, key: str, token: int) -> sa.ColumnElement[bool]:
        return sa.and_(
            table.c.workspace_id == workspace_id,
            table.c.key == key,
            table.c.created_at == token,
            table.c.status.is_(None),
        )

    async def complete(self, workspace_id: str, key: str, token: int, status: int, body: str) -> None:
        """Store the answer, unless the claim was taken over meanwhile (then the newer claimant answers)."""
        mine = self._mine(workspace_id, key, token)
        await self.db.run_write(lambda conn: conn.execute(table.update().where(mine).values(status=status, body=body)))

    async def release(self, workspace_id: str, key: str, token: int) -> None:
        """The request was refused: a retry with the key does the work again."""
        mine = self._mine(workspace_id, key, token)
        await self.db.run_write(lambda conn: conn.execute(table.delete().where(mine)))
