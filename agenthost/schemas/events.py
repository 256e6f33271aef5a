"""Session events that clients send, and their persisted wire form (layer 0; REFERENCE §7)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.common import JSON, Body
from agenthost.schemas.content import DocumentBlock, FileSource, ImageBlock, RedactedBlock, UserContent


class UserMessage(Body):
    type: Literal["user.message"]
    content: Annotated[list[UserContent], Field(min_length=1)]


class DefineOutcome(Body):
    type: Literal["user.define_outcome"]
    description: str
    rubric: dict[str, Any]
    max_iterations: int | None = None


InitialEvent = Annotated[UserMessage | DefineOutcome, Field(discriminator="type")]


def check_user_content(content: list[Any], field: str) -> list[JSON]:
    """Validate the blocks of a user message and return their wire form."""
    blocks: list[JSON] = []
    for index, block in enumerate(content):
        where = f"{field}[{index}]"
        if isinstance(block, RedactedBlock):
            raise InvalidRequest(f"{where}.type: clients cannot send redacted blocks")
        if isinstance(block, ImageBlock | DocumentBlock) and isinstance(block.source, FileSource):
            raise NotSupported(f"{where}.source", "file sources (they need the Files API)")
        dumped = block.model_dump()
        if isinstance(block, DocumentBlock):
            dumped.setdefault("context", None)
            dumped.setdefault("title", None)
        blocks.append(dumped)
    return blocks


def initial_event_payloads(events: list[Any]) -> list[JSON]:
    """Validate a session's ``initial_events`` (BEHAVIOUR §1.1) and return the payloads to persist."""
    if len(events) > 50:
        raise InvalidRequest("initial_events: at most 50 events are allowed")
    payloads: list[JSON] = []
    for index, event in enumerate(events):
        if isinstance(event, DefineOutcome):
            raise NotSupported(f"initial_events[{index}]", "user.define_outcome (outcomes)")
        payloads.append(
            {"type": "user.message", "content": check_user_content(event.content, f"initial_events[{index}].content")}
        )
    return payloads


def event_json(event_id: str, payload: JSON, processed_at: str | None) -> JSON:
    """A persisted event on the wire: its payload plus ``id`` and ``processed_at``."""
    return {"id": event_id, **payload, "processed_at": processed_at}


# BetaManagedAgentsSessionEventType: every persisted type (REFERENCE §7.3), the values of `types[]`.
EVENT_TYPES = frozenset(
    {
        "user.message",
        "user.interrupt",
        "user.tool_confirmation",
        "user.custom_tool_result",
        "agent.custom_tool_use",
        "agent.message",
        "agent.thinking",
        "agent.mcp_tool_use",
        "agent.mcp_tool_result",
        "agent.tool_use",
        "agent.tool_result",
        "agent.thread_message_received",
        "agent.thread_message_sent",
        "agent.thread_context_compacted",
        "session.error",
        "session.status_rescheduled",
        "session.status_running",
        "session.status_idle",
        "session.status_terminated",
        "session.thread_created",
        "span.outcome_evaluation_start",
        "span.outcome_evaluation_end",
        "span.model_request_start",
        "span.model_request_end",
        "span.outcome_evaluation_ongoing",
        "user.define_outcome",
        "session.thread_status_running",
        "session.thread_status_idle",
        "session.thread_status_terminated",
        "user.tool_result",
        "session.thread_status_rescheduled",
        "session.updated",
        "system.message",
        "session.usage",
        "workflow_run.created",
        "workflow_run.status_running",
        "workflow_run.status_idle",
        "workflow_run.status_ended",
        "workflow_run.error",
        "workflow_run.phase_started",
        "workflow_run.phase_ended",
    }
)
