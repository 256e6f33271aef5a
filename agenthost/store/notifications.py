"""Notifications between agenthost processes (layer 1): PostgreSQL ``NOTIFY`` on one channel.

A notification carries only a kind, a session and a number, never an event: the receiver
reads what it needs from the log. They are sent inside the writing transaction
(:func:`announce`), so PostgreSQL delivers them exactly when the write commits, and never for
a write that rolled back; on SQLite there is one process and nothing to tell.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

CHANNEL = "agenthost"
ORIGIN = secrets.token_hex(6)
"""This process, in its notifications: it skips its own, having published those events directly."""


@dataclass(frozen=True, slots=True)
class Notification:
    """What one process tells the others. ``kind``: ``e`` events shown up to ``number``; ``w`` the
    session has input for an engine; ``i`` an interrupt was queued; ``d`` the session was deleted."""

    kind: str
    session_id: str
    number: int = 0
    origin: str = ORIGIN

    @classmethod
    def parse(cls, payload: str) -> Notification | None:
        parts = payload.split(" ")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    def encode(self) -> str:
        return f"{self.kind} {self.session_id} {self.number} {self.origin}"


def announce(conn: sa.Connection, kind: str, session_id: str, number: int = 0) -> None:
    """Notify the other processes when the caller's transaction commits (PostgreSQL; one process on SQLite)."""
    if conn.dialect.name == "postgresql":
        payload = Notification(kind, session_id, number).encode()
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))


Handler = Callable[[Notification], None]
