"""What the API asks of sessions at run time (layer 3): sending events.

``send_events`` appends the client's events in one transaction with every check that
depends on the session's state (what a paused turn waits for, archived or terminated
sessions), decides whether the session now has work, publishes, and wakes the engine.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa

from agenthost.engine.mcp_servers import validate
from agenthost.errors import Conflict, InvalidRequest, NotFound
from agenthost.schemas.common import JSON, now_us
from agenthost.schemas.events import ENGINE_CALLS, RESULT_FIELDS
from agenthost.store.environments import environment_row
from agenthost.store.notifications import announce
from agenthost.store.sessions import Logged, append_events, session_row
from agenthost.store.sql import Store
from agenthost.store.tables import events, sessions
from agenthost.store.work import enqueue

RECEIPT = ("user.custom_tool_result", "user.tool_result")
"""Kinds processed on receipt; every other kind waits for the engine."""
WORKER_TOOLS = frozenset({"bash", "read", "write", "edit", "glob", "grep"})
"""Built-in tools a self-hosted environment's worker runs (``web_fetch``/``web_search`` run in the server)."""


class Waker(Protocol):
    """The engine as the API sees it: told about new input and interrupts."""

    def wake(self, session_id: str | None = None) -> None: ...

    def interrupt(self, session_id: str) -> None: ...

    async def forget(self, session_id: str) -> None: ...

    def provision(self, session_id: str) -> None: ...


def _target(conn: sa.Connection, session_id: str, event_id: str, field: str) -> Any:
    query = sa.select(events.c.seq, events.c.type, events.c.payload).where(
        events.c.session_id == session_id, events.c.id == event_id
    )
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"{field}: no event {event_id!r} in this session")
    return row


def answered(conn: sa.Connection, session_id: str, call_id: str) -> bool:
    """Whether a tool call already has its result in the log (from the engine, the worker or the client)."""
    result_of = sa.or_(
        *(
            sa.and_(events.c.type == kind, events.c.payload[field].as_string() == call_id)
            for kind, field in RESULT_FIELDS.items()
        )
    )
    query = sa.select(events.c.seq).where(events.c.session_id == session_id, result_of).limit(1)
    return conn.execute(query).first() is not None


def _turn_ended_since(conn: sa.Connection, session_id: str, seq: int) -> bool:
    """Whether the turn that made the event at ``seq`` has ended (an idle that waits on nothing came after it).

    An answer to a call of an ended turn would land after later messages of the conversation.
    """
    ended = sa.select(events.c.seq).where(
        events.c.session_id == session_id,
        events.c.seq > seq,
        events.c.type == "session.status_idle",
        events.c.payload[("stop_reason", "type")].as_string() != "requires_action",
    )
    return conn.execute(ended.limit(1)).first() is not None


def _confirmed(conn: sa.Connection, session_id: str, call_id: str) -> bool:
    query = sa.select(events.c.seq).where(
        events.c.session_id == session_id,
        events.c.type == "user.tool_confirmation",
        events.c.payload["tool_use_id"].as_string() == call_id,
        events.c.payload["result"].as_string() == "allow",
    )
    return conn.execute(query.limit(1)).first() is not None


def _check_answer(
    conn: sa.Connection, row: Any, payload: JSON, where: str, awaiting: set[str], early: set[str]
) -> tuple[str, bool]:
    """Validate a confirmation or tool result; return the answered call and whether the paused turn awaited it.

    A result may also come while the turn that made the call is still running (a worker or a client
    that answers at once): it is accepted when the call has no result yet, and the engine finds it
    when it would pause for the call.
    """
    kind = payload["type"]
    field = RESULT_FIELDS.get(kind, "tool_use_id")  # a confirmation names its call as tool results do
    event_id = payload[field]
    target = _target(conn, row.id, event_id, f"{where}.{field}")
    if kind == "user.tool_confirmation":
        if target.type not in ENGINE_CALLS or target.payload.get("evaluated_permission") != "ask":
            raise InvalidRequest(f"{where}.tool_use_id: {event_id} is not a tool use that asks for confirmation")
    elif kind == "user.custom_tool_result":
        if target.type != "agent.custom_tool_use":
            raise InvalidRequest(f"{where}.custom_tool_use_id: {event_id} is not an agent.custom_tool_use event")
    elif target.type != "agent.tool_use":
        raise InvalidRequest(f"{where}.tool_use_id: {event_id} is not an agent.tool_use event")
    elif target.payload.get("evaluated_permission") == "deny":
        raise InvalidRequest(f"{where}.tool_use_id: {event_id} was denied; it must not run")
    elif target.payload.get("evaluated_permission") == "ask" and not _confirmed(conn, row.id, event_id):
        raise InvalidRequest(f"{where}.tool_use_id: {event_id} has not been confirmed (user.tool_confirmation)")
    if event_id in awaiting:
        awaiting.discard(event_id)
        return event_id, True
    if kind in RECEIPT and event_id not in early and not answered(conn, row.id, event_id):
        # A worker runs its call as soon as it may (at once, or when the user confirmed it), whatever
        # else the session waits on; a client answers its custom call while the turn still runs.
        worker_call = kind == "user.tool_result" and target.payload.get("name") in WORKER_TOOLS
        running = row.status in ("running", "rescheduling") and not row.blocked_on
        if (worker_call or (kind == "user.custom_tool_result" and running)) and not _turn_ended_since(
            conn, row.id, target.seq
        ):
            early.add(event_id)
            return event_id, False
    raise InvalidRequest(f"{where}.{field}: {event_id} is not awaiting an answer (already answered, or not paused)")


async def send_events(
    store: Store, engine: Waker | None, workspace_id: str, session_id: str, payloads: list[JSON]
) -> list[JSON]:
    """Append client events to a session (``POST /v1/sessions/{id}/events``); return them as echoed."""

    def write(conn: sa.Connection) -> tuple[list[Logged], bool, bool]:
        row = session_row(conn, workspace_id, session_id, lock="update")
        if row.archived_at is not None:
            raise Conflict(f"session {session_id} is archived; it accepts no events")
        if row.status == "terminated":
            raise Conflict(f"session {session_id} is terminated; it accepts no events")
        self_hosted = environment_row(conn, workspace_id, row.environment_id).fields["config"]["type"] == "self_hosted"
        if any(p["type"] == "user.tool_result" for p in payloads) and not self_hosted:
            raise InvalidRequest("events: user.tool_result is only accepted for self_hosted environments")
        now = now_us()
        idle = row.status == "idle"
        awaiting = set(row.blocked_on or [])
        answered: list[str] = []
        early: set[str] = set()
        logged: list[Logged] = []
        for index, payload in enumerate(payloads):
            kind = payload["type"]
            if kind in ("user.tool_confirmation", *RECEIPT):
                call_id, awaited = _check_answer(conn, row, payload, f"events[{index}]", awaiting, early)
                if awaited:
                    answered.append(call_id)
            # An interrupt of an idle session has nothing to stop: it is processed on receipt.
            processed = kind in RECEIPT or (kind == "user.interrupt" and idle)
            logged += append_events(conn, session_id, [payload], processed=processed, now=now)
        values: dict[str, Any] = {"updated_at": now}
        work = any(p["type"] in ("user.message", "system.message") for p in payloads)
        interrupt = any(p["type"] == "user.interrupt" for p in payloads) and not idle
        if answered:
            remaining = [event_id for event_id in row.blocked_on if event_id not in answered]
            values["blocked_on"] = remaining
            if remaining:  # answering only some re-emits idle with the rest
                idle_again = {
                    "type": "session.status_idle",
                    "stop_details": None,
                    "stop_reason": {"type": "requires_action", "event_ids": remaining},
                }
                logged += append_events(conn, session_id, [idle_again], processed=True, now=now)
            else:
                work = True
        if row.blocked_on and (not answered or values["blocked_on"]):
            work = False  # a paused turn resumes only when every call it waits on is answered
        if work or interrupt:
            values["pending"] = True
            if idle and work:
                values["status"] = "running"
        conn.execute(sessions.update().where(sessions.c.id == session_id).values(**values))
        if interrupt:
            announce(conn, "i", session_id)
        if work or interrupt:
            announce(conn, "w", session_id)
        if self_hosted and (work or any(p["type"] == "user.interrupt" for p in payloads)):
            # New input, or an interrupt: a session whose worker went away gets one again.
            enqueue(conn, workspace_id, row.environment_id, session_id, now)
        return logged, work, interrupt

    logged, work, interrupt = await store.db.run_write(write)
    store.bus.publish(session_id, logged)
    if engine is not None:
        if interrupt:
            engine.interrupt(session_id)
        if work or interrupt:
            engine.wake(session_id)
    return [event for _, event in logged if event["type"] != "session.status_idle"]


async def delete_session(store: Store, engine: Waker | None, workspace_id: str, session_id: str) -> None:
    """Delete a session, its log and its sandbox."""
    await store.sessions.delete(workspace_id, session_id)
    if engine is not None:
        await engine.forget(session_id)


def wake_after_create(engine: Waker | None, session: JSON) -> None:
    """A new session's sandbox is provisioned now (in the background); one born running is woken."""
    if engine is None:
        return
    engine.provision(session["id"])
    if session["status"] == "running":
        engine.wake(session["id"])


async def validate_credential(store: Store, workspace_id: str, vault_id: str, credential_id: str) -> JSON:
    """``POST .../credentials/{id}/mcp_oauth_validate``."""
    return await validate(store.vaults, workspace_id, vault_id, credential_id)
