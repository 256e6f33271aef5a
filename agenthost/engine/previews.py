"""Live previews of a model call (layer 3): ``event_start`` / ``event_delta`` as the answer streams.

The provider tells a :class:`Previews` where each content block begins and what text it adds.
Each block that will become an event gets that event's id now: a text block with some
non-whitespace text becomes an ``agent.message``, a run of thinking blocks one
``agent.thinking`` (whitespace-only text between them does not break the run), exactly as
the response is logged afterwards (``loop.Run._log_response`` takes these ids). A message's
preview opens with ``event_start`` once its first non-whitespace text arrives, and each piece
of text after that is an ``event_delta`` at content index 0 (one text block per message); a
thinking preview is start-only. Frames go to the bus, which hands them to the streams that
asked for them; they are never persisted. The logged event with the same id closes the
preview, or, when the call fails first, its ``span.model_request_end``.
"""

from __future__ import annotations

from collections.abc import Callable

from agenthost.ids import new_id
from agenthost.schemas.common import JSON

THINKING = ("thinking", "redacted_thinking")


def start_frame(kind: str, event_id: str) -> JSON:
    return {"type": "event_start", "event": {"type": kind, "id": event_id}}


def delta_frame(event_id: str, text: str) -> JSON:
    return {
        "type": "event_delta",
        "event_id": event_id,
        "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": text}},
    }


class Previews:
    """One model call's previews; ``ids`` maps a content block's index to the id of the event it becomes."""

    def __init__(self, show: Callable[[JSON], None]):
        self._show = show
        self.ids: dict[int, str] = {}
        self._pending: dict[int, str] = {}  # whitespace a text block began with, sent with its first text
        self._thinking: str | None = None  # the id of the thinking run the next thinking block joins

    def block(self, index: int, kind: str) -> None:
        if kind in THINKING:
            if self._thinking is None:
                self._thinking = new_id("sevt")
                self._show(start_frame("agent.thinking", self._thinking))
            self.ids[index] = self._thinking
        elif kind == "text":
            self._pending[index] = ""
        elif kind == "tool_use":
            self._thinking = None  # a tool call ends a thinking run (blocks of other kinds are not logged)

    def text(self, index: int, text: str) -> None:
        event_id = self.ids.get(index)
        if event_id is not None:
            self._show(delta_frame(event_id, text))
            return
        pending = self._pending.get(index)
        if pending is None:
            return  # text of a block that was never announced: nothing to preview it as
        pending += text
        if not pending.strip():
            self._pending[index] = pending
            return
        del self._pending[index]
        self._thinking = None  # the message ends any thinking run before it
        self.ids[index] = event_id = new_id("sevt")
        self._show(start_frame("agent.message", event_id))
        self._show(delta_frame(event_id, pending))
