"""Every kind of turn, through the official SDK: exact event order, stream equal to list."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from agenthost.testing.fake_anthropic import Error, Text, Thinking, ToolUse
from tests.conftest import Script
from tests.engine.conftest import Recorder, assert_stream_equals_list, types

TOOLSET = {"type": "agent_toolset_20260401"}


def say(text: str) -> dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def start(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], **agent: Any
) -> tuple[Any, Recorder]:
    session = client.beta.sessions.create(agent=script.agent(client, **agent).id, environment_id=environment.id)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    return session, recorder


def test_text_turn(client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]) -> None:
    script(Text("Hello there."))
    session, recorder = start(client, script, environment, recorders)
    sent = client.beta.sessions.events.send(session.id, events=[say("hi")])
    assert sent.data is not None and len(sent.data) == 1
    echoed = sent.data[0]
    assert echoed.type == "user.message" and echoed.id.startswith("sevt_") and echoed.processed_at is None
    streamed = recorder.idles()
    assert types(streamed) == [
        "user.message",
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    queued, taken = streamed[0], streamed[1]
    assert queued.id == taken.id == echoed.id and queued.processed_at is None and taken.processed_at is not None
    listed = assert_stream_equals_list(streamed, client, session.id)
    message, span_start, span_end, usage, idle = listed[3], listed[2], listed[4], listed[5], listed[6]
    assert message.type == "agent.message" and message.content[0].type == "text"
    assert message.content[0].text == "Hello there."
    assert span_end.type == "span.model_request_end" and span_end.model_request_start_id == span_start.id
    assert span_end.is_error is False and span_end.model_usage.input_tokens == 10
    assert usage.type == "session.usage" and usage.usage.output_tokens == 5
    assert idle.type == "session.status_idle" and idle.stop_reason.type == "end_turn"
    after = client.beta.sessions.retrieve(session.id)
    assert after.status == "idle"  # the status write happened before the idle event was published
    assert after.usage.input_tokens == 10 and after.usage.output_tokens == 5
    assert after.usage.cache_read_input_tokens == 3
    assert after.stats.active_seconds is not None and after.stats.active_seconds > 0
    (request,) = script.requests()
    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    ]
    assert request["system"][0]["text"] == script.system and request["stream"] is True


def test_thinking_is_a_progress_event(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Thinking("Thought it through."))
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("think")])
    streamed = recorder.idles()
    listed = assert_stream_equals_list(streamed, client, session.id)
    assert types(listed)[3:6] == ["agent.thinking", "agent.message", "span.model_request_end"]


def test_bash_then_answer(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "echo hello from $(pwd)"}, text="Running it."), Text("Done."))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("run it")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    tool_use, result = listed[4], listed[6]
    assert tool_use.type == "agent.tool_use" and tool_use.name == "bash"
    assert tool_use.evaluated_permission == "allow" and tool_use.evaluation is not None
    assert tool_use.evaluation.type == "always_allow"
    assert result.type == "agent.tool_result" and result.tool_use_id == tool_use.id and result.is_error is False
    assert result.content is not None and result.content[0].type == "text"
    assert result.content[0].text == "hello from /workspace"
    second = script.requests()[1]["messages"]
    assert second[1]["content"][1] == {"type": "tool_use", "id": tool_use.id, "name": "bash", "input": tool_use.input}
    assert second[2]["content"][0]["tool_use_id"] == tool_use.id


def test_file_tools(client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]) -> None:
    script(
        ToolUse("write", {"file_path": "/workspace/notes/a.txt", "content": "alpha\nbeta\ngamma\n"}),
        ToolUse("read", {"file_path": "notes/a.txt", "view_range": [2, 3]}),
        ToolUse("edit", {"file_path": "/workspace/notes/a.txt", "old_string": "beta", "new_string": "BETA"}),
        ToolUse("glob", {"pattern": "**/*.txt"}),
        ToolUse("grep", {"pattern": "B.TA"}),
        ToolUse("read", {"file_path": "/etc/passwd"}),
        ToolUse("edit", {"file_path": "notes/a.txt", "old_string": "a", "new_string": "x"}),
        Text("All done."),
    )
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("files please")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    results = [e for e in listed if e.type == "agent.tool_result"]
    texts = [r.content[0].text for r in results]
    assert texts[0] == "Wrote 17 characters to /workspace/notes/a.txt."
    assert texts[1] == "     2\tbeta\n     3\tgamma"
    assert texts[2] == "Replaced 1 occurrence(s) in /workspace/notes/a.txt."
    assert texts[3] == "/workspace/notes/a.txt"
    assert texts[4] == "/workspace/notes/a.txt:2:BETA"
    assert results[5].is_error is True and "the file tools reach only" in texts[5]
    assert results[6].is_error is True and "occurs 4 times" in texts[6]
    assert [r.is_error for r in results[:5]] == [False] * 5


def test_message_queued_while_running_continues_the_turn(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "sleep 0.5; echo slept"}), Text("First answer."), Text("Second answer."))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("first")])
    recorder.wait(lambda evs: "agent.tool_use" in types(evs))
    second = client.beta.sessions.events.send(session.id, events=[say("second")])
    assert second.data is not None and second.data[0].processed_at is None
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "user.message",  # taken when the first answer ended: the turn goes on with it
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    last_request = script.requests()[-1]["messages"]
    assert last_request[-1]["content"][0]["text"] == "second"


def test_overload_then_success(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Error(529, "overloaded_error", "Overloaded"), Text("Recovered."))
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("hi")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "session.error",
        "session.status_rescheduled",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    failed_span, error = listed[3], listed[4]
    assert failed_span.type == "span.model_request_end" and failed_span.is_error is True
    assert error.type == "session.error" and error.error.type == "model_overloaded_error"
    assert error.error.retry_status.type == "retrying"
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"


def test_overload_until_exhausted(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(*[Error(429, "rate_limit_error", "slow down")] * 3)  # model_retries=2 in tests: 3 attempts
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("hi")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    attempt = ["span.model_request_start", "span.model_request_end"]
    retry = ["session.error", "session.status_rescheduled", "session.status_running"]
    assert types(listed) == [
        "user.message",
        "session.status_running",
        *attempt,
        *retry,
        *attempt,
        *retry,
        *attempt,
        "session.error",
        "session.usage",
        "session.status_idle",
    ]
    errors = [e for e in listed if e.type == "session.error"]
    assert [e.error.retry_status.type for e in errors] == ["retrying", "retrying", "exhausted"]
    assert all(e.error.type == "model_rate_limited_error" for e in errors)
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "retries_exhausted"
    assert client.beta.sessions.retrieve(session.id).status == "idle"


def test_fatal_model_error_is_a_clear_session_error(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Error(401, "authentication_error", "invalid x-api-key"))
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("hi")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "session.error",
        "session.usage",
        "session.status_idle",
    ]
    error = listed[4]
    assert error.type == "session.error" and error.error.type == "model_request_failed_error"
    assert "ANTHROPIC_API_KEY" in error.error.message and error.error.retry_status.type == "exhausted"
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "retries_exhausted"


def test_stream_resumes_after_last_event_id(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Text("one"), Text("two"))
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("1")])
    first = recorder.idles()
    recorder.close()
    live = Recorder(client, session.id)  # a subscriber that stays connected through the second turn
    recorders.append(live)
    client.beta.sessions.events.send(session.id, events=[say("2")])
    second = live.idles()
    resumed = Recorder(client, session.id, extra_headers={"Last-Event-ID": first[-1].id})
    recorders.append(resumed)
    replay = resumed.wait(lambda evs: len(evs) >= len(second))
    # The gap since the last seen event comes back exactly as a connected stream showed it (the queued
    # message, then the same message processed), once, and together with the first part equals the list.
    assert [(e.id, e.type, e.processed_at) for e in replay] == [(e.id, e.type, e.processed_at) for e in second]
    assert replay[0].type == "user.message" and replay[0].processed_at is None
    assert types(assert_stream_equals_list(first + replay, client, session.id)).count("session.status_idle") == 2


def test_archive_and_delete_are_refused_while_running(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "sleep 30"}))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("sleep")])
    recorder.wait(lambda evs: "agent.tool_use" in types(evs))
    with pytest.raises(anthropic.BadRequestError, match="running"):
        client.beta.sessions.archive(session.id)
    with pytest.raises(anthropic.BadRequestError, match="running"):
        client.beta.sessions.delete(session.id)
    client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    recorder.idles()
    assert client.beta.sessions.archive(session.id).status == "terminated"


def test_system_message_reaches_the_model_with_its_user_message(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(Text("Noted."))
    session, recorder = start(client, script, environment, recorders)
    sent = client.beta.sessions.events.send(
        session.id,
        events=[say("hello"), {"type": "system.message", "content": [{"type": "text", "text": "Be terse."}]}],
    )
    assert sent.data is not None and [e.type for e in sent.data] == ["user.message", "system.message"]
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed)[:3] == ["user.message", "system.message", "session.status_running"]
    (request,) = script.requests()
    texts = [b["text"] for b in request["messages"][0]["content"]]
    assert texts == ["hello", "[system message]\nBe terse."]


def test_input_queued_behind_exhausted_retries_is_flushed(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    from agenthost.testing.fake_anthropic import Hold

    held = Hold(Text("never"))
    script(
        Error(529, "overloaded_error", "busy"),
        Error(529, "overloaded_error", "busy"),
        Error(529, "overloaded_error", "busy"),
        Text("fresh"),
    )
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("doomed")])
    recorder.wait(lambda evs: "session.status_rescheduled" in types(evs))
    client.beta.sessions.events.send(session.id, events=[say("queued behind")])
    first_idle = recorder.idles(1)[-1]
    assert first_idle.stop_reason.type == "retries_exhausted"
    client.beta.sessions.events.send(session.id, events=[say("after")])
    recorder.idles(2)
    last = script.requests()[-1]["messages"]
    texts = [b["text"] for m in last for b in m["content"] if b["type"] == "text"]
    assert texts == ["doomed", "after"]  # the flushed message never reached the model
    assert held.release.is_set() is False
