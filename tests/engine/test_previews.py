"""Live previews (``event_deltas[]``): the answer shown while the model writes it, then the event itself.

Through the official SDK's stream and its own accumulator: previews open with ``event_start``,
grow with ``event_delta``, carry the id of the event that closes them, come before it, and
never reach the log or a stream that did not ask.
"""

from __future__ import annotations

import threading
from typing import Any

import anthropic
from anthropic.lib.sessions import accumulate_managed_agents_event

from agenthost.testing.fake_anthropic import Pieces
from tests.conftest import Script
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import say

PREVIEWS = ("event_start", "event_delta")


def _persisted(events: list[Any]) -> list[Any]:
    return [event for event in events if event.type not in PREVIEWS]


def test_a_message_is_previewed_as_it_is_written_then_logged_with_the_same_id(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    release = threading.Event()
    reply = Pieces(["  Hel", "lo, ", "world."], thinking=True, release=release)
    script(reply)
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    watching = Recorder(client, session.id, event_deltas=["agent.message", "agent.thinking"])
    messages_only = Recorder(client, session.id, event_deltas=["agent.message"])
    plain = Recorder(client, session.id)
    recorders.extend([watching, messages_only, plain])
    client.beta.sessions.events.send(session.id, events=[say("hi")])

    # While the model is still writing, the stream already shows what it wrote so far.
    assert reply.after_first.wait(20)
    early = watching.wait(lambda events: any(e.type == "event_delta" for e in events))
    assert types(early)[-3:] == ["event_start", "event_start", "event_delta"]
    thinking_start, message_start, first = early[-3:]
    assert thinking_start.event.type == "agent.thinking" and message_start.event.type == "agent.message"
    assert first.event_id == message_start.event.id and first.delta.content.text == "  Hel"
    assert first.delta.index == 0 and first.delta.type == "content_delta"
    assert [e.type for e in client.beta.sessions.events.list(session.id)].count("agent.message") == 0
    release.set()

    streamed = watching.idles()
    assert types(streamed) == [
        "user.message",
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "event_start",
        "event_start",
        "event_delta",
        "event_delta",
        "event_delta",
        "agent.thinking",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    deltas = [e for e in streamed if e.type == "event_delta"]
    assert "".join(d.delta.content.text for d in deltas) == "  Hello, world."
    thinking = next(e for e in streamed if e.type == "agent.thinking")
    message = next(e for e in streamed if e.type == "agent.message")
    assert thinking.id == thinking_start.event.id and message.id == message_start.event.id
    assert all(d.event_id == message.id for d in deltas)

    # The SDK's accumulator folds the previews into the message, which the logged event then replaces.
    snapshot = None
    for event in streamed:
        snapshot = accumulate_managed_agents_event(snapshot, event)
        if event.type == "event_delta":
            assert snapshot is not None and snapshot.id == message.id
            assert "  Hello, world.".startswith(snapshot.content[0].text)
    assert snapshot is not None and snapshot.content[0].text == "  Hello, world." and snapshot.id == message.id

    # Previews are never stored: the stream without them equals the log, and so do the other streams.
    assert_stream_equals_list(_persisted(streamed), client, session.id)
    only = messages_only.idles()
    assert [e.type for e in only if e.type in PREVIEWS] == ["event_start", *["event_delta"] * 3]
    assert _persisted(only) == _persisted(streamed)
    assert plain.idles() == _persisted(streamed)


def test_a_stream_that_joins_mid_message_gets_no_partial_preview_and_the_whole_event(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    release = threading.Event()
    reply = Pieces(["Once ", "upon ", "a time."], release=release)
    script(reply)
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    early = Recorder(client, session.id, event_deltas=["agent.message"])
    recorders.append(early)
    client.beta.sessions.events.send(session.id, events=[say("a story")])
    assert reply.after_first.wait(20)
    early.wait(lambda events: any(e.type == "event_delta" for e in events))
    late = Recorder(client, session.id, event_deltas=["agent.message"])
    recorders.append(late)
    release.set()
    streamed = late.idles()
    # It saw neither the start of the preview nor any piece of it: a delta without its start would
    # break the SDK's accumulator.
    assert [e.type for e in streamed if e.type in PREVIEWS] == []
    message = next(e for e in streamed if e.type == "agent.message")
    assert message.content[0].text == "Once upon a time."
    assert _persisted(early.idles())[-4:] == streamed[-4:]


def test_a_message_preview_opens_at_its_first_visible_text_with_what_came_before_it(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Pieces(["\n", "  ", "Hi", " there"]))
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    recorder = Recorder(client, session.id, event_deltas=["agent.message"])
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("hello")])
    streamed = recorder.idles()
    previews = [e for e in streamed if e.type in PREVIEWS]
    # Whitespace alone opens nothing: the first delta carries it together with the first visible text.
    assert [e.type for e in previews] == ["event_start", "event_delta", "event_delta"]
    assert [d.delta.content.text for d in previews[1:]] == ["\n  Hi", " there"]
    message = next(e for e in streamed if e.type == "agent.message")
    assert message.id == previews[0].event.id and message.content[0].text == "\n  Hi there"
    assert_stream_equals_list(_persisted(streamed), client, session.id)


def test_a_stream_that_fails_midway_closes_its_preview_and_the_retry_previews_anew(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Pieces(["Half a ", "thought"], fail_after_first="overloaded_error"), Pieces(["Whole ", "thought."]))
    session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
    recorder = Recorder(client, session.id, event_deltas=["agent.message"])
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("think")])
    streamed = recorder.idles()
    assert types(streamed) == [
        "user.message",
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "event_start",
        "event_delta",
        "span.model_request_end",
        "session.error",
        "session.status_rescheduled",
        "session.status_running",
        "span.model_request_start",
        "event_start",
        "event_delta",
        "event_delta",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    failed_start, retried_start = (e for e in streamed if e.type == "event_start")
    failed_end = streamed[6]
    assert failed_end.type == "span.model_request_end" and failed_end.is_error is True  # it closes the preview
    error = streamed[7]
    assert error.type == "session.error" and error.error.type == "model_overloaded_error"
    assert error.error.retry_status.type == "retrying"  # an error event midway is retried like a 529
    message = next(e for e in streamed if e.type == "agent.message")
    assert message.id == retried_start.event.id != failed_start.event.id
    assert message.content[0].text == "Whole thought."
    listed = assert_stream_equals_list(_persisted(streamed), client, session.id)
    assert failed_start.event.id not in {event.id for event in listed}  # the preview of what was never said
