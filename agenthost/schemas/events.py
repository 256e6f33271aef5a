"""Session events that clients send, and their persisted wire form (layer 0)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StringConstraints

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.common import JSON, MAX_MESSAGE, Body, Id
from agenthost.schemas.content import DocumentBlock, FileSource, ImageBlock, RedactedBlock, TextBlock, UserContent


class UserMessage(Body):
    type: Literal["user.message"]
    content: Annotated[list[UserContent], Field(min_length=1)]


class DefineOutcome(Body):
    type: Literal["user.define_outcome"]
    description: str
    rubric: dict[str, Any]
    max_iterations: int | None = None


InitialEvent = Annotated[UserMessage | DefineOutcome, Field(discriminator="type")]


class UserInterrupt(Body):
    type: Literal["user.interrupt"]
    session_thread_id: Id | None = None


class UserToolConfirmation(Body):
    type: Literal["user.tool_confirmation"]
    tool_use_id: Annotated[str, Field(min_length=1, max_length=128)]
    result: Literal["allow", "deny"]
    deny_message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE)] | None = None
    session_thread_id: Id | None = None


class SearchResultText(Body):
    type: Literal["text"]
    text: str


class SearchResultBlock(Body):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[SearchResultText]
    citations: dict[str, bool] | None = None


ToolResultContent = Annotated[TextBlock | ImageBlock | DocumentBlock | SearchResultBlock, Field(discriminator="type")]


class UserCustomToolResult(Body):
    type: Literal["user.custom_tool_result"]
    custom_tool_use_id: Annotated[str, Field(min_length=1, max_length=128)]
    content: list[ToolResultContent] | None = None
    is_error: StrictBool | None = None
    session_thread_id: Id | None = None


class UserToolResult(Body):
    type: Literal["user.tool_result"]
    tool_use_id: Annotated[str, Field(min_length=1, max_length=128)]
    content: list[ToolResultContent] | None = None
    is_error: StrictBool | None = None
    session_thread_id: Id | None = None


class SystemText(Body):
    type: Literal["text"]
    text: str


class SystemMessage(Body):
    type: Literal["system.message"]
    content: Annotated[list[SystemText], Field(min_length=1, max_length=1000)]


EventParam = Annotated[
    UserMessage
    | UserInterrupt
    | UserToolConfirmation
    | UserCustomToolResult
    | UserToolResult
    | DefineOutcome
    | SystemMessage,
    Field(discriminator="type"),
]


class SendEvents(Body):
    events: Annotated[list[EventParam], Field(min_length=1, max_length=100)]


def _tool_result_content(content: list[Any] | None, field: str) -> list[JSON] | None:
    return None if content is None else check_user_content(content, field)


def send_payloads(events: list[Any]) -> list[JSON]:
    """Check the shape rules of a send request; return payloads to persist.

    Rules that depend on the session (which tool uses are awaiting an answer) are checked
    by the engine's command in the same transaction as the append.
    """
    payloads: list[JSON] = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if getattr(event, "session_thread_id", None) is not None:
            raise InvalidRequest(f"{where}.session_thread_id: this session has no threads")
        if isinstance(event, UserMessage):
            payloads.append({"type": event.type, "content": check_user_content(event.content, f"{where}.content")})
        elif isinstance(event, UserInterrupt):
            payloads.append({"type": event.type, "session_thread_id": None})
        elif isinstance(event, UserToolConfirmation):
            if event.result == "allow" and event.deny_message is not None:
                raise InvalidRequest(f"{where}.deny_message: only allowed with result 'deny'")
            payloads.append(
                {
                    "type": event.type,
                    "tool_use_id": event.tool_use_id,
                    "result": event.result,
                    "deny_message": event.deny_message,
                    "session_thread_id": None,
                }
            )
        elif isinstance(event, UserCustomToolResult):
            payloads.append(
                {
                    "type": event.type,
                    "custom_tool_use_id": event.custom_tool_use_id,
                    "content": _tool_result_content(event.content, f"{where}.content"),
                    "is_error": event.is_error,
                    "session_thread_id": None,
                }
            )
        elif isinstance(event, UserToolResult):
            payloads.append(
                {
                    "type": event.type,
                    "tool_use_id": event.tool_use_id,
                    "content": _tool_result_content(event.content, f"{where}.content"),
                    "is_error": event.is_error,
                    "session_thread_id": None,
                }
            )
        elif isinstance(event, DefineOutcome):
            raise NotSupported(where, "user.define_outcome (outcomes)")
        else:
            if index != len(events) - 1:
                raise InvalidRequest(f"{where}: system.message must be the last event of the request")
            previous = payloads[-1]["type"] if payloads else None
            if previous not in ("user.message", "user.tool_result", "user.custom_tool_result"):
                raise InvalidRequest(
                    f"{where}: system.message must directly follow the user.message, user.tool_result or "
                    "user.custom_tool_result it accompanies"
                )
            payloads.append({"type": event.type, "content": [block.model_dump() for block in event.content]})
    return payloads


def check_user_content(content: list[Any], field: str) -> list[JSON]:
    """Validate the blocks of a user message and return their wire form."""
    blocks: list[JSON] = []
    for index, block in enumerate(content):
        where = f"{field}[{index}]"
        if isinstance(block, RedactedBlock):
            raise InvalidRequest(f"{where}.type: clients cannot send redacted blocks")
        if isinstance(block, TextBlock) and not block.text.strip():
            raise InvalidRequest(f"{where}.text: text blocks must contain non-whitespace text")
        if isinstance(block, ImageBlock | DocumentBlock) and isinstance(block.source, FileSource):
            raise NotSupported(f"{where}.source", "file sources (they need the Files API)")
        dumped = block.model_dump()
        if isinstance(block, DocumentBlock):
            dumped.setdefault("context", None)
            dumped.setdefault("title", None)
        blocks.append(dumped)
    return blocks


def initial_event_payloads(events: list[Any]) -> list[JSON]:
    """Validate a session's ``initial_events`` and return the payloads to persist."""
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


# -- the log's rules: which events are calls and which answer them ---------------------------------

CALL_TYPES = ("agent.tool_use", "agent.custom_tool_use", "agent.mcp_tool_use")
ENGINE_CALLS = ("agent.tool_use", "agent.mcp_tool_use")
"""Calls the engine runs itself (unless a self-hosted worker takes a built-in one)."""
RESULT_FIELDS = {
    "agent.tool_result": "tool_use_id",
    "user.tool_result": "tool_use_id",
    "user.custom_tool_result": "custom_tool_use_id",
    "agent.mcp_tool_result": "mcp_tool_use_id",
}
"""Each kind of tool result, and the field naming the call it answers."""

WORK_TYPES = ("user.message", "system.message", "user.tool_confirmation")
"""Input that gives a run something to do (an interrupt alone does not)."""

DELTA_TYPES = frozenset({"agent.message", "agent.thinking"})
"""The events whose live previews a stream may ask for (``event_deltas[]``)."""
MAX_DELTA_TYPES = 100

# BetaManagedAgentsSessionEventType: every persisted type, the values of `types[]`.
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
