"""The event stream itself: framing, pings, the end of a deleted session, many subscribers (REFERENCE §1.5)."""

from __future__ import annotations

import threading
import time
from typing import Any

import anthropic
import httpx2
import orjson

from agenthost.testing.fake_anthropic import Text
from tests.conftest import LiveServer, Script, assert_error, wait_status
from tests.engine.conftest import Recorder, assert_stream_equals_list
from tests.engine.test_turns import say


def _frames(response: httpx2.Response, stop: threading.Event, out: list[tuple[str, str, str]]) -> None:
    """Parse raw SSE frames: (id, event, data)."""
    fields: dict[str, str] = {}
    try:
        for line in response.iter_lines():
            if stop.is_set():
                return
            if not line:
                out.append((fields.get("id", ""), fields.get("event", ""), fields.get("data", "")))
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    except httpx2.HTTPError:
        return  # the test closed the response


def test_frames_name_their_event_and_pings_keep_idle_streams_open(
    server: LiveServer, key: str, client: anthropic.Anthropic, script: Script, environment: Any
) -> None:
    script(Text("hi"))
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    frames: list[tuple[str, str, str]] = []
    stop = threading.Event()
    with (
        httpx2.Client(base_url=server.base_url, headers={"x-api-key": key}, timeout=30) as raw,
        raw.stream(
            "GET", f"/v1/sessions/{session.id}/events/stream", headers={"accept": "application/json"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = threading.Thread(target=_frames, args=(response, stop, frames), daemon=True)
        reader.start()
        client.beta.sessions.events.send(session.id, events=[say("hello")])
        wait_status(client, session.id, "idle")
        deadline = time.monotonic() + 10  # ping_seconds is 1 in tests
        while not any(event == "ping" for _, event, _ in frames[8:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
    events = [(i, e, orjson.loads(d)) for i, e, d in frames if e != "ping"]
    assert len(events) >= 8
    for frame_id, name, data in events:
        assert name == data["type"] and frame_id == data["id"]
    assert any(name == "ping" for _, name, _ in frames), "no ping arrived while the session was idle"
    assert all(orjson.loads(d) == {"type": "ping"} for _, name, d in frames if name == "ping")


def test_deleting_the_session_ends_its_streams(
    client: anthropic.Anthropic, agent: Any, environment: Any, recorders: list[Recorder]
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    readers = [Recorder(client, session.id) for _ in range(3)]
    recorders.extend(readers)
    client.beta.sessions.update(session.id, title="last words")
    client.beta.sessions.delete(session.id)
    for reader in readers:
        assert reader.ended.wait(10), "the stream stayed open after the session was deleted"
        assert [e.type for e in reader.events] == ["session.updated", "session.deleted"]
        assert reader.error is None


def test_unknown_session_and_bad_resume_are_json_errors(
    raw: httpx2.Client, agent: Any, environment: Any, client: anthropic.Anthropic
) -> None:
    assert_error(raw.get("/v1/sessions/sesn_nope/events/stream"), 404, "not_found_error")
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert_error(
        raw.get(f"/v1/sessions/{session.id}/events/stream", headers={"last-event-id": "sevt_other"}),
        400,
        "invalid_request_error",
        "Last-Event-ID",
    )
    assert_error(
        raw.get(f"/v1/sessions/{session.id}/events/stream", params={"event_deltas[]": "agent.message"}),
        400,
        "invalid_request_error",
        "event_deltas",
    )


def test_many_subscribers_each_get_every_event(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Text("to all of you"))
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    readers = [Recorder(client, session.id) for _ in range(20)]
    recorders.extend(readers)
    client.beta.sessions.events.send(session.id, events=[say("broadcast")])
    for reader in readers:
        assert_stream_equals_list(reader.idles(), client, session.id)
    assert all(len(reader.events) == len(readers[0].events) for reader in readers)
