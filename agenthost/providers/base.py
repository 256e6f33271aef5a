"""The model provider interface (layer 1).

A provider turns a :class:`ModelRequest` (system prompt, messages in Anthropic Messages
format, tool definitions) into a :class:`ModelResponse`, or raises :class:`ModelError`
saying whether a retry can help. The engine never sees HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ErrorKind = Literal[
    "model_overloaded_error",
    "model_rate_limited_error",
    "model_request_failed_error",
    "billing_error",
    "unknown_error",
]


@dataclass(frozen=True)
class ModelRequest:
    """One model call: everything the provider needs, nothing about sessions."""

    model: str
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    max_tokens: int
    effort: str | None = None
    speed: str | None = None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass
class ModelResponse:
    """The model's answer: content blocks in Messages format (text, tool_use, thinking, ...)."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage = field(default_factory=Usage)


class ModelError(Exception):
    """A failed model call: ``kind`` is the session error type, ``retryable`` whether to try again."""

    def __init__(self, kind: ErrorKind, message: str, *, retryable: bool):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable


class ModelProvider(Protocol):
    """Anything that can answer a model request."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run one model call to completion; raise ModelError when it fails."""
        ...

    async def close(self) -> None:
        """Release connections (server shutdown)."""
        ...
