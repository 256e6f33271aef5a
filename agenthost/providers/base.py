"""The model provider interface (layer 1).

A provider turns a :class:`ModelRequest` (system prompt, messages in Anthropic Messages
format, tool definitions) into a :class:`ModelResponse`, or raises :class:`ModelError`
saying whether a retry can help. The engine never sees HTTP.

Providers stream: while the answer arrives they tell a :class:`StreamListener` where each
content block begins and what text it adds, so the engine can show the answer as it is
written. The response returned at the end is what counts; what the listener heard is a
preview of it.
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


class StreamListener(Protocol):
    """Hears a response as it streams; each call returns at once (it must not block the provider)."""

    def block(self, index: int, kind: str) -> None:
        """Content block ``index`` of the response begins; ``kind`` is its type (``text``, ``thinking``, ...)."""
        ...

    def text(self, index: int, text: str) -> None:
        """Text block ``index`` grew by ``text``."""
        ...


class ModelProvider(Protocol):
    """Anything that can answer a model request."""

    async def complete(self, request: ModelRequest, listener: StreamListener | None = None) -> ModelResponse:
        """Run one model call to completion, telling ``listener`` of it as it streams; raise ModelError on failure."""
        ...

    async def close(self) -> None:
        """Release connections (server shutdown)."""
        ...


class ModelProviders(Protocol):
    """The providers of a server, each answering the model ids it serves."""

    def for_model(self, model_id: str) -> ModelProvider:
        """The provider that answers ``model_id``."""
        ...

    async def close(self) -> None:
        """Close every provider (server shutdown)."""
        ...
