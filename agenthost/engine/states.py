"""A session's run states as a run moves through them (layer 3): each move one fenced write with its event.

Every function here runs inside a transaction the run's journal fenced (the caller still
holds the lease), writes the session row and appends the status event together, and adds
what it showed to ``published``, so a status and its event are committed, and shown, as one.

- :func:`begin` : ``running`` with ``session.status_running`` (a turn starts, or is taken over);
- :func:`end` : ``idle`` with ``session.usage`` and ``session.status_idle`` and its stop reason,
  unless input that came meanwhile lets the turn go on; the lease is released or kept for the
  next turn;
- :func:`release` : the lease given up without a status change (nothing to run).

A turn paused for a retry moves through ``rescheduling`` and back to ``running``
(:data:`RESCHEDULED`, :data:`RESUMED`, appended through the journal with their status).
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa

from agenthost.engine.commands import answered
from agenthost.schemas.common import JSON
from agenthost.schemas.events import WORK_TYPES
from agenthost.store.sessions import Logged, append_events, has_queued, take_queued
from agenthost.store.tables import sessions
from agenthost.store.work import enqueue

RESCHEDULED = ({"type": "session.status_rescheduled"}, "rescheduling")
RESUMED = ({"type": "session.status_running"}, "running")

EndMode = Literal["normal", "flush", "interrupt"]
Ended = Literal["released", "next", "continue"]

_RELEASE = (
    sessions.update()
    .where(sessions.c.id == sa.bindparam("sid"))
    .values(lease_owner=None, lease_expires_at=None, pending=sa.bindparam("left"), updated_at=sa.bindparam("at"))
)


def release(conn: sa.Connection, session_id: str, now: int, *, pending: bool = False) -> None:
    """Give the lease up; ``pending`` says whether input is left for the next run."""
    conn.execute(_RELEASE, {"sid": session_id, "left": pending, "at": now})


def begin(
    conn: sa.Connection, session_id: str, row: Any, now: int, published: list[Logged], *, backend: str | None
) -> None:
    """The session is ``running``; ``backend`` is recorded as the session's sandbox backend on its first run."""
    values: dict[str, Any] = {"status": "running", "blocked_on": None, "updated_at": now}
    if backend is not None:
        values["sandbox_backend"] = backend
    if row.running_since is None:
        values["running_since"] = now
    conn.execute(sessions.update().where(sessions.c.id == session_id).values(**values))
    published.extend(append_events(conn, session_id, [{"type": "session.status_running"}], processed=True, now=now))


def end(
    conn: sa.Connection,
    session_id: str,
    row: Any,
    now: int,
    published: list[Logged],
    stop_reason: JSON,
    mode: EndMode,
    *,
    self_hosted: bool,
    usage: JSON | None = None,
) -> Ended:
    """End the turn idle with ``stop_reason``, unless it goes on.

    ``mode``: "normal" goes on instead ("continue") when new input arrived during an end_turn;
    "flush" drops queued input first (retries exhausted); "interrupt" ends the turn whatever is
    queued (messages behind an interrupt become the next turn). Returns "next" when input is
    left for another turn (the lease is kept), "continue" when the turn goes on (new input, or
    every call it would wait on was answered already), else "released". ``usage``: the
    session's usage when the caller changed it after reading ``row``.
    """
    if mode == "flush":
        take_queued(conn, session_id, now, published, flush=True)
    elif mode == "normal" and stop_reason["type"] == "end_turn" and has_queued(conn, session_id):
        if has_queued(conn, session_id, ("user.interrupt",)):
            # Nothing left to interrupt: the interrupt ends this turn, what came with it is the next.
            take_queued(conn, session_id, now, published, types=("user.interrupt",))
        else:
            taken = take_queued(conn, session_id, now, published)
            if any(event["type"] in WORK_TYPES for event in taken):
                return "continue"
    reason = stop_reason
    blocked = reason.get("event_ids")
    if blocked:  # results that came while the turn was still running need no pause
        blocked = [call_id for call_id in blocked if not answered(conn, session_id, call_id)]
        if not blocked:
            return "continue"
        reason = {**reason, "event_ids": blocked}
        if self_hosted:  # make sure a worker is there to answer (a new item if the last one ended)
            enqueue(conn, row.workspace_id, row.environment_id, session_id, now)
    active = row.active_us + (now - row.running_since if row.running_since else 0)
    usage = {**(row.usage if usage is None else usage), "active_seconds": active / 1_000_000}
    payloads = [
        {"type": "session.usage", "usage": usage, "budget": None},
        {"type": "session.status_idle", "stop_reason": reason, "stop_details": None},
    ]
    conn.execute(
        sessions.update()
        .where(sessions.c.id == session_id)
        .values(status="idle", blocked_on=blocked, running_since=None, active_us=active, usage=usage)
    )
    published.extend(append_events(conn, session_id, payloads, processed=True, now=now))
    if not blocked and has_queued(conn, session_id):
        return "next"  # keep the lease: the next turn starts at once
    release(conn, session_id, now)
    return "released"
