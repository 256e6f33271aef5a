"""The event stream itself: framing, pings, the end of a deleted session, many subscribers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson

from agenthost.testing.fake_anthropic import Text
from tests.conftest import LiveServer, Script, assert_error, wait_status
from tests.engine.conftest import Recorder, assert_stream_equals_list
from tests.engine.test_turns import say
from tests.processes import KEY, Agenthost, free_port


def _sse_frames(response: httpx2.Response) -> Iterator[tuple[str, str, str]]:
    """Parse raw SSE frames: (id, event, data)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            yield fields.get("id", ""), fields.get("event", ""), fields.get("data", "")
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


def _frames(response: httpx2.Response, stop: threading.Event, out: list[tuple[str, str, str]]) -> None:
    """Collect raw SSE frames until ``stop`` is set (a reader thread's target)."""
    try:
        for parsed in _sse_frames(response):
            if stop.is_set():
                return
            out.append(parsed)
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
        raw.get(f"/v1/sessions/{session.id}/events/stream", params={"event_deltas[]": "agent.tool_use"}),
        400,
        "invalid_request_error",
        "event_deltas[0]",
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


def test_a_reader_that_stops_reading_delays_no_one_and_misses_nothing(
    server: LiveServer,
    key: str,
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    recorders: list[Recorder],
) -> None:
    """A stalled client's writes wait for it (the server's send suspends) while every other stream goes on."""
    script(Text("read it all"))
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    with (
        httpx2.Client(base_url=server.base_url, headers={"x-api-key": key}, timeout=30) as raw,
        raw.stream("GET", f"/v1/sessions/{session.id}/events/stream") as stalled,  # subscribed: nothing read
    ):
        reader = Recorder(client, session.id)
        recorders.append(reader)
        # Shown queued, then taken: 16 MB of frames, more than the kernel buffers, so the server's writes must wait.
        bulk = [say(f"{index} " + "x" * 100_000) for index in range(80)]
        client.beta.sessions.events.send(session.id, events=bulk)
        streamed = reader.idles()  # the reading stream finished while the stalled one had read nothing
        assert_stream_equals_list(streamed, client, session.id)
        frames = []
        for parsed in _sse_frames(stalled):
            frames.append(parsed)
            if parsed[1] == "session.status_idle":
                break
    assert sum(len(data) for _, _, data in frames) > 16_000_000
    showings = [(i, _when(orjson.loads(data)["processed_at"])) for i, name, data in frames if name != "ping"]
    assert showings == [(event.id, event.processed_at) for event in streamed]


def _when(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_streams_whose_clients_left_end_on_the_server(tmp_path: Path, processes: list[Agenthost]) -> None:
    """A stream's coroutine ends when its client disconnects: none is left for shutdown to cancel."""
    # No ping is due while the test runs: only the client's leaving can end the streams.
    processes.append(served := Agenthost(["serve"], tmp_path, port=free_port(), ping_seconds="600"))
    assert served.url is not None
    with (
        anthropic.Anthropic(base_url=served.url, api_key=KEY, _strict_response_validation=True) as client,
        httpx2.Client(base_url=served.url, headers={"x-api-key": KEY}, timeout=30) as raw,
    ):
        agent = client.beta.agents.create(model="claude-opus-4-7", name="a")
        env = client.beta.environments.create(name="left")
        session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
        path = f"/v1/sessions/{session.id}/events/stream"
        streams = [raw.send(raw.build_request("GET", path), stream=True) for _ in range(3)]
        client.beta.sessions.update(session.id, title="seen")
        for response in streams:
            next(parsed for parsed in _sse_frames(response) if '"title":"seen"' in parsed[2])
            response.close()  # mid-body: the connection is closed
        client.beta.sessions.update(session.id, title="after they left")  # written to no one, and no error
        assert client.beta.sessions.retrieve(session.id).title == "after they left"
    served.stop()
    assert "graceful shutdown exceeded" not in served.output(), served.output()
