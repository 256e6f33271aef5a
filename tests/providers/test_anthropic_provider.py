"""The Anthropic provider against the scripted Messages API over real HTTP, through a proxy that drops connections."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import anthropic
import pytest

from agenthost.providers.anthropic import AnthropicProvider
from agenthost.providers.base import ModelError, ModelRequest
from agenthost.testing.fake_anthropic import FakeAnthropic, Text


class DroppingProxy:
    """Forwards TCP to ``upstream``, but closes the first ``drops`` connections before reading anything."""

    def __init__(self, upstream: str, drops: int):
        self.host, port = upstream.removeprefix("http://").split(":")
        self.port = int(port)
        self.drops = drops
        self.dropped = 0
        self.forwarded = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dropped < self.drops:
            self.dropped += 1
            writer.close()  # what a server closing an idle kept-alive connection looks like to the client
            return
        self.forwarded += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@dataclass
class Made:
    providers: list[AnthropicProvider] = field(default_factory=list)
    proxies: list[DroppingProxy] = field(default_factory=list)


@pytest.fixture
async def made() -> AsyncIterator[Made]:
    """What a test started, closed after it whatever the outcome."""
    started = Made()
    yield started
    for provider in started.providers:
        await provider.close()
    for proxy in started.proxies:
        await proxy.close()


def request(key: str) -> ModelRequest:
    return ModelRequest(
        model="claude-test",
        system=[{"type": "text", "text": key}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        tools=[],
        max_tokens=100,
    )


async def start(
    fake: FakeAnthropic, made: Made, drops: int, *replies: Text
) -> tuple[str, DroppingProxy, AnthropicProvider]:
    """A script key with ``replies``; a provider reaching the model through a proxy that drops ``drops`` connections."""
    key = f"provider-{secrets.token_hex(4)}"
    fake.script(key, *replies)
    proxy = await DroppingProxy(fake.url, drops).start()
    provider = AnthropicProvider(anthropic.AsyncAnthropic(base_url=proxy.url, api_key="sk-ant-fake", max_retries=0))
    made.proxies.append(proxy)
    made.providers.append(provider)
    return key, proxy, provider


async def test_a_connection_closed_before_any_answer_is_tried_once_more(fake: FakeAnthropic, made: Made) -> None:
    key, proxy, provider = await start(fake, made, 1, Text("hello"))
    response = await provider.complete(request(key))
    assert response.content == [{"type": "text", "text": "hello"}]
    assert response.stop_reason == "end_turn"
    assert (proxy.dropped, proxy.forwarded) == (1, 1)
    assert len(fake.requests_for(key)) == 1  # the model was asked once


async def test_a_model_api_that_keeps_closing_connections_is_a_retryable_model_error(
    fake: FakeAnthropic, made: Made
) -> None:
    key, proxy, provider = await start(fake, made, 5)
    with pytest.raises(ModelError) as raised:
        await provider.complete(request(key))
    assert raised.value.kind == "model_request_failed_error" and raised.value.retryable
    assert "could not reach the model API" in raised.value.message
    assert (proxy.dropped, proxy.forwarded) == (2, 0)  # tried twice, no more
    assert fake.requests_for(key) == []


async def test_a_tool_schema_with_an_integer_past_64_bits_is_still_sent(fake: FakeAnthropic, made: Made) -> None:
    key, _proxy, provider = await start(fake, made, 0, Text("ok"))
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 2**70}}}
    response = await provider.complete(replace(request(key), tools=[{"name": "count", "input_schema": schema}]))
    assert response.content == [{"type": "text", "text": "ok"}]
    (sent,) = fake.requests_for(key)
    assert sent["tools"][0]["input_schema"]["properties"]["n"]["maximum"] == 2**70
