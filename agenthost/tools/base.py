"""What a tool returns (layer 2)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from agenthost.sandbox.base import Sandbox

SPILL_CHARS = 100_000  # longer outputs go to a file, the model gets a preview and the path
PREVIEW_CHARS = 2_000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@dataclass
class ToolOutput:
    """Content blocks for ``agent.tool_result`` and whether the call failed."""

    content: list[dict[str, Any]] = field(default_factory=list)
    is_error: bool = False

    @classmethod
    def text(cls, text: str, *, is_error: bool = False) -> ToolOutput:
        return cls([{"type": "text", "text": text}], is_error)


class ToolInputError(Exception):
    """The model called a tool with input it cannot take; the model sees the message."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


async def spill(sandbox: Sandbox, text: str) -> str:
    """Keep long output in a workspace file and return a preview that names it."""
    if len(text) <= SPILL_CHARS:
        return text
    shown = await asyncio.to_thread(
        sandbox.files.write_bytes, f".agenthost/outputs/{secrets.token_hex(6)}.txt", text.encode()
    )
    return (
        f"[output of {len(text)} characters saved to {shown}; the first {PREVIEW_CHARS} follow]\n"
        + text[:PREVIEW_CHARS]
    )


def require(tool_input: dict[str, Any], key: str, kind: type) -> Any:
    value = tool_input.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ToolInputError(f"`{key}` is required and must be a {kind.__name__}")
    return value


def optional(tool_input: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = tool_input.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ToolInputError(f"`{key}` must be a {kind.__name__}")
    return value
