"""Helpers for turn tests: a stream reader and the checks every turn test makes."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest
import uvicorn

from tests.conftest import wait_until
from tests.engine.observe import Weather, weather_app


class Recorder:
    """Reads a session's event stream in a thread. The stream is open when the constructor returns."""

    def __init__(self, client: anthropic.Anthropic, session_id: str, **kwargs: Any):
        self.client = client
        self.session_id = session_id
        self.stream = client.beta.sessions.events.stream(session_id, **kwargs)
        self.events: list[Any] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self.stream:
                self.events.append(event)
        except Exception as exc:  # closed from outside, or a server error frame
            self.error = exc
        finally:
            self.ended.set()

    def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 60) -> list[Any]:
        wait_until(lambda: predicate(self.events), timeout=timeout)
        return list(self.events)

    def idles(self, count: int = 1, timeout: float = 60) -> list[Any]:
        """Wait for the ``count``-th ``session.status_idle`` and return everything seen so far."""
        return self.wait(lambda evs: sum(e.type == "session.status_idle" for e in evs) >= count, timeout)

    def close(self, wait: bool = True) -> None:
        self.stream.close()
        if wait:
            self.ended.wait(5)


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    opened: list[Recorder] = []
    yield opened
    for recorder in opened:
        recorder.close(wait=False)
    for recorder in opened:
        recorder.ended.wait(5)


# The events of a turn with one built-in tool call and a final answer, in order.
ONE_TOOL_TURN = [
    "user.message",
    "session.status_running",
    "span.model_request_start",
    "agent.tool_use",
    "span.model_request_end",
    "agent.tool_result",
    "span.model_request_start",
    "agent.message",
    "span.model_request_end",
    "session.usage",
    "session.status_idle",
]


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def assert_stream_equals_list(streamed: list[Any], client: anthropic.Anthropic, session_id: str) -> list[Any]:
    """Nothing lost or duplicated: the stream's events, each at its last appearance, are the list's in the same
    order, and equal to the listed ones. (A queued user event is streamed twice, queued and then processed;
    the list orders events by when they were processed.)"""
    listed = list(client.beta.sessions.events.list(session_id, limit=1000))
    showings = [(event.id, event.processed_at) for event in streamed]
    assert len(showings) == len(set(showings)), "the stream showed an event twice"
    last: dict[str, Any] = {}
    for event in streamed:
        last.pop(event.id, None)
        last[event.id] = event
    assert list(last) == [e.id for e in listed]
    for event in listed:
        assert last[event.id] == event
    return listed


@pytest.fixture(scope="module")
def weather() -> Iterator[Weather]:
    """The MCP server of tests/engine/observe.py, on a loopback port, for one test module."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    state = Weather(f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(weather_app(state), log_level="warning", lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    yield state
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line the server writes while the test runs, at every level.

    The server runs in threads of this process; the test's own threads (the SDK client that sends
    the token to create the credential, the stream readers) are left out.
    """
    lines: list[str] = []
    main = threading.main_thread().ident

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread != main and not record.threadName.endswith("(_read)"):
                lines.append(self.format(record))

    handler, root = Keep(logging.DEBUG), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(previous)
