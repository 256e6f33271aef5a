"""The Anthropic Messages API provider (layer 1), through the official SDK with streaming.

Connection settings (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``) come from the
environment the way the SDK reads them, so any Anthropic-compatible gateway works and
tests point it at a scripted fake server. The stable prefix of every request (tools,
system prompt) carries a prompt-cache breakpoint, and so does the newest message, so
consecutive calls of a turn read the conversation from cache.

The body is serialised here with orjson and handed to the SDK as ready bytes: given a
dict, the SDK copies the whole tree in Python and encodes it with the standard ``json``
module before every call, which a long conversation makes the largest cost of a turn
in the server (docs/benchmarks.md). Sending, errors and the stream's assembly into a
message stay the SDK's (``AsyncMessageStream``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import anthropic
import orjson
from anthropic import not_given
from anthropic.lib._parse._response import ResponseFormatT
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.parsed_message import ParsedMessage

from agenthost.providers.base import ModelError, ModelRequest, ModelResponse, StreamListener, Usage

_CACHE = {"type": "ephemeral"}
_EVENTS = anthropic.AsyncStream[RawMessageStreamEvent]
_SNAPSHOT = ParsedMessage[ResponseFormatT]
"""The SDK's stream assembly names this generic type at every response; pydantic caches it only while a
reference lives, and re-creating the class cost ~0.3 ms a call. This reference keeps the cache warm."""


class AnthropicProvider:
    """Calls ``/v1/messages`` with ``stream: true`` and assembles the final message."""

    def __init__(self, client: anthropic.AsyncAnthropic | None = None, *, timeout: float = 600.0):
        # The SDK's own retries are off: the engine retries and reports each attempt as session events.
        self._client = client or anthropic.AsyncAnthropic(max_retries=0, timeout=timeout)

    async def close(self) -> None:
        await self._client.close()

    @property
    def missing_credentials(self) -> str | None:
        """What to set when the client has no credentials (the SDK would fail every call), else None."""
        if self._client.api_key is None and self._client.auth_token is None:
            return "ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"
        return None

    async def complete(self, request: ModelRequest, listener: StreamListener | None = None) -> ModelResponse:
        if missing := self.missing_credentials:
            # Retryable: an operator who sets it and restarts the server gets the turn finished.
            raise ModelError(
                "model_request_failed_error",
                f"the server has no credentials for the Anthropic API: set {missing} in its environment",
                retryable=True,
            )
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": _with_cache_breakpoint(request.messages),
            "stream": True,
        }
        if request.system:
            params["system"] = _mark_last(request.system)
        if request.tools:
            params["tools"] = _mark_last(request.tools)
        if request.effort and request.effort != "high":  # "high" is the API's own default: leave it unsaid
            params["output_config"] = {"effort": request.effort}
        if request.speed == "fast":
            params["speed"] = "fast"
        try:
            stream = AsyncMessageStream(await self._send(_encode(params)), output_format=not_given)
            try:
                if listener is not None:
                    await _tell(stream, listener)
                message = await stream.get_final_message()
            finally:
                await stream.close()
        except anthropic.APIStatusError as exc:
            raise _classify(exc) from exc
        except anthropic.APIConnectionError as exc:
            raise ModelError(
                "model_request_failed_error", f"could not reach the model API: {exc}", retryable=True
            ) from exc
        usage = message.usage
        return ModelResponse(
            content=[block.model_dump(exclude_none=True) for block in message.content],
            stop_reason=message.stop_reason,
            usage=Usage(
                input_tokens=usage.input_tokens or 0,
                output_tokens=usage.output_tokens or 0,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            ),
        )

    async def _send(self, body: bytes) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        """Send the request; the response's events, once its headers came.

        A connection that fails before any answer is tried once more at once, on a new connection:
        a kept-alive connection that the server closed just as it was reused fails that way, and that
        is no failure of the model. A timeout, or an error after the answer began, is not retried here.
        """
        try:
            return await self._post(body)
        except anthropic.APITimeoutError:
            raise
        except anthropic.APIConnectionError:
            return await self._post(body)

    async def _post(self, body: bytes) -> anthropic.AsyncStream[RawMessageStreamEvent]:
        return await self._client.post("/v1/messages", cast_to=Message, content=body, stream=True, stream_cls=_EVENTS)


async def _tell(stream: AsyncMessageStream[Any], listener: StreamListener) -> None:
    """Pass the stream's block starts and text deltas to ``listener`` as the SDK assembles the message."""
    async for event in stream:
        if event.type == "content_block_start":
            listener.block(event.index, event.content_block.type)
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            listener.text(event.index, event.delta.text)


def _encode(params: dict[str, Any]) -> bytes:
    """The request body; integers orjson cannot hold (past 64 bits, in a tool's schema say) go through ``json``."""
    try:
        return orjson.dumps(params)
    except TypeError:
        return json.dumps(params).encode()


def _classify(exc: anthropic.APIStatusError) -> ModelError:
    status = exc.status_code
    detail = _message(exc)
    if status < 400:  # an `error` event in a stream that began well: the API failed midway
        status = MIDWAY.get(_error_type(exc), 500)
    if status == 529:
        return ModelError("model_overloaded_error", f"the model is overloaded: {detail}", retryable=True)
    if status == 429:
        return ModelError(
            "model_rate_limited_error", f"the model API rate-limited the request: {detail}", retryable=True
        )
    if status >= 500 or status == 408:
        return ModelError("model_request_failed_error", f"the model API failed ({status}): {detail}", retryable=True)
    if status == 402:
        return ModelError("billing_error", f"billing error from the model API: {detail}", retryable=False)
    if status in (401, 403):
        return ModelError(
            "model_request_failed_error",
            f"the model API refused the credentials ({status}): {detail}; check ANTHROPIC_API_KEY",
            retryable=False,
        )
    return ModelError(
        "model_request_failed_error", f"the model API rejected the request ({status}): {detail}", retryable=False
    )


MIDWAY = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500}
"""The status an error that ends a stream midway stands for (any other type: a failure, tried again)."""


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return str(exc.message)


def _mark_last(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    marked = [dict(block) for block in blocks]
    marked[-1]["cache_control"] = _CACHE
    return marked


def _with_cache_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the last content block of the newest message, so the next call reads the prefix from cache."""
    if not messages:
        return messages
    last = copy.deepcopy(messages[-1])  # only the newest message changes; the rest is shared
    messages = [*messages[:-1], last]
    content = last["content"]
    if (
        isinstance(content, list)
        and content
        and content[-1].get("type") in ("text", "tool_result", "image", "document")
    ):
        content[-1]["cache_control"] = _CACHE
    return messages
