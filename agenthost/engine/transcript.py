"""From the event log to Messages API messages (layer 3).

The log is the only state a turn has: the model context is rebuilt from it before each
model call, so a runner that starts after a crash sees exactly what the last one saw.
Tool-use ids are the ``sevt_`` ids of the tool-use events, which the API accepts and
clients already use to answer custom tools.
"""

from __future__ import annotations

from typing import Any

from agenthost.schemas.common import JSON
from agenthost.schemas.events import CALL_TYPES, RESULT_FIELDS
from agenthost.tools.mcp import mcp_tool_name

INTERRUPTED = "This tool call did not run: the turn was interrupted."


def _has_text(block: JSON) -> bool:
    """The API refuses text blocks that are empty or only whitespace."""
    return block.get("type") != "text" or bool((block.get("text") or "").strip())


def _clean(block: JSON) -> JSON:
    """A content block as the Messages API takes it (no nulls)."""
    cleaned = {k: v for k, v in block.items() if v is not None}
    if isinstance(cleaned.get("source"), dict):
        cleaned["source"] = {k: v for k, v in cleaned["source"].items() if v is not None}
    return cleaned


def _blocks(event: JSON) -> list[JSON]:
    kind = event["type"]
    if kind == "user.message":
        return [_clean(b) for b in event["content"] if _has_text(b)]
    if kind == "system.message":
        text = "\n".join(b["text"] for b in event["content"])
        return [{"type": "text", "text": f"[system message]\n{text}"}]
    if kind == "agent.message":
        return [
            {"type": "text", "text": b["text"]} for b in event["content"] if b.get("type") == "text" and _has_text(b)
        ]
    if kind in ("agent.tool_use", "agent.custom_tool_use"):
        return [{"type": "tool_use", "id": event["id"], "name": event["name"], "input": event["input"]}]
    if kind == "agent.mcp_tool_use":
        name = mcp_tool_name(event["mcp_server_name"], event["name"])
        return [{"type": "tool_use", "id": event["id"], "name": name, "input": event["input"]}]
    if kind in RESULT_FIELDS:
        block: JSON = {"type": "tool_result", "tool_use_id": event[RESULT_FIELDS[kind]]}
        content = [_clean(b) for b in event.get("content") or [] if _has_text(b)]
        if content:
            block["content"] = content
        if event.get("is_error"):
            block["is_error"] = True
        return [block]
    return []


def _role(event: JSON) -> str | None:
    kind = event["type"]
    if kind == "agent.message" or kind in CALL_TYPES:
        return "assistant"
    if kind in ("user.message", "system.message") or kind in RESULT_FIELDS:
        return "user"
    return None


def build_messages(events: list[JSON]) -> list[dict[str, Any]]:
    """Messages for the model from processed log events, in log order, roles alternating."""
    return Transcript().messages(events)


class Transcript:
    """``build_messages`` for a log that only grows: each call converts just the events added since the last.

    Messages are gathered as the log has them (``_gathered``); what the model is sent adds, to a user
    message, error results for the previous message's unanswered tool uses, and puts tool results
    first. That depends only on a message and the one before it, and only the newest message still
    changes, so every earlier message is finished once and kept (``_finished``).
    """

    def __init__(self) -> None:
        self._gathered: list[dict[str, Any]] = []
        self._finished: list[dict[str, Any]] = []
        self._seen = 0

    def messages(self, events: list[JSON]) -> list[dict[str, Any]]:
        """The messages for ``events``, which must extend the events of the previous call."""
        gathered = self._gathered
        for event in events[self._seen :]:
            role = _role(event)
            blocks = _blocks(event) if role else []
            if not blocks:
                continue
            if gathered and gathered[-1]["role"] == role:
                gathered[-1]["content"].extend(blocks)
            else:
                gathered.append({"role": role, "content": blocks})
        self._seen = len(events)
        while len(self._finished) < len(gathered) - 1:
            self._finished.append(_finish(gathered, len(self._finished)))
        return [*self._finished, _finish(gathered, len(gathered) - 1)] if gathered else []


def _finish(gathered: list[dict[str, Any]], index: int) -> dict[str, Any]:
    """Message ``index`` as the model is sent it (a copy: the gathered message may still grow)."""
    message = gathered[index]
    content = list(message["content"])
    if message["role"] == "user":
        previous = gathered[index - 1] if index else None
        if previous is not None and previous["role"] == "assistant":
            # Tool uses without a result get an explicit error result (an interrupted turn). The newest
            # assistant message has no following message yet: the engine is about to answer its calls.
            answered = {b.get("tool_use_id") for b in content if b["type"] == "tool_result"}
            content[:0] = [
                {
                    "type": "tool_result",
                    "tool_use_id": block["id"],
                    "content": [{"type": "text", "text": INTERRUPTED}],
                    "is_error": True,
                }
                for block in previous["content"]
                if block["type"] == "tool_use" and block["id"] not in answered
            ]
        # The API wants a user turn's tool results before anything else in it.
        content.sort(key=lambda b: b["type"] != "tool_result")
    return {"role": message["role"], "content": content}
