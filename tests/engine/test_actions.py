"""Turns that wait for the client: custom tools, confirmations, interrupts."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest

from agenthost.testing.fake_anthropic import Hold, Text, ToolUse
from tests.conftest import Script, assert_error, wait_status
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say, start

LOOKUP = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a word up.",
    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
}
ASK_BASH = {
    "type": "agent_toolset_20260401",
    "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}],
}
PAUSE = ["session.usage", "session.status_idle"]


def test_custom_tool_pauses_until_its_result(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("lookup", {"word": "ephemeral"}), Text("It means short-lived."))
    session, recorder = start(client, script, environment, recorders, tools=[LOOKUP])
    client.beta.sessions.events.send(session.id, events=[say("what is ephemeral?")])
    paused = recorder.idles(1)
    tool_use, idle = paused[-4], paused[-1]
    assert tool_use.type == "agent.custom_tool_use" and tool_use.name == "lookup"
    assert tool_use.input == {"word": "ephemeral"}
    assert idle.type == "session.status_idle" and idle.stop_reason.type == "requires_action"
    assert idle.stop_reason.event_ids == [tool_use.id]
    assert client.beta.sessions.retrieve(session.id).status == "idle"
    sent = client.beta.sessions.events.send(
        session.id,
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": tool_use.id,
                "content": [{"type": "text", "text": "lasting a very short time"}],
            }
        ],
    )
    assert sent.data is not None and sent.data[0].processed_at is not None  # processed on receipt
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.custom_tool_use",
        "span.model_request_end",
        *PAUSE,
        "user.custom_tool_result",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        *PAUSE,
    ]
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
    result_block = script.requests()[1]["messages"][2]["content"][0]
    assert result_block["type"] == "tool_result" and result_block["tool_use_id"] == tool_use.id
    assert result_block["content"][0]["text"] == "lasting a very short time"


def test_partial_answers_re_emit_idle_with_the_rest(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("lookup", {"word": "a"}, more=[("lookup", {"word": "b"})]), Text("Both looked up."))
    session, recorder = start(client, script, environment, recorders, tools=[LOOKUP])
    client.beta.sessions.events.send(session.id, events=[say("look up a and b")])
    first_idle = recorder.idles(1)[-1]
    assert first_idle.type == "session.status_idle" and first_idle.stop_reason.type == "requires_action"
    use_a, use_b = first_idle.stop_reason.event_ids
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": use_b, "content": []}]
    )
    second_idle = recorder.idles(2)[-1]
    assert second_idle.type == "session.status_idle" and second_idle.stop_reason.type == "requires_action"
    assert second_idle.stop_reason.event_ids == [use_a]
    with pytest.raises(anthropic.BadRequestError, match="not awaiting"):
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": use_b}]
        )
    client.beta.sessions.events.send(
        session.id,
        events=[
            {
                "type": "user.custom_tool_result",
                "custom_tool_use_id": use_a,
                "is_error": True,
                "content": [{"type": "text", "text": "no such word"}],
            }
        ],
    )
    listed = assert_stream_equals_list(recorder.idles(3), client, session.id)
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
    results = script.requests()[1]["messages"][2]["content"]
    assert sorted((b["tool_use_id"], b.get("is_error", False)) for b in results) == [(use_a, True), (use_b, False)]


async def test_sdk_tool_runner_drives_custom_tools(
    aclient: anthropic.AsyncAnthropic, script: Script, environment: Any
) -> None:
    script(ToolUse("lookup", {"word": "brisk"}), Text("Brisk means quick."))

    @anthropic.beta_async_tool
    async def lookup(word: str) -> str:
        """Look a word up."""
        return f"{word}: quick and energetic"

    agent = await aclient.beta.agents.create(
        model="claude-opus-4-7", name="runner", system=script.system, tools=[LOOKUP]
    )
    session = await aclient.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    await aclient.beta.sessions.events.send(session.id, events=[say("what is brisk?")])
    async with asyncio.timeout(60):  # the runner ends max_idle after the turn ends; never hang the suite
        calls = [
            call async for call in aclient.beta.sessions.events.tool_runner(session.id, tools=[lookup], max_idle=1.0)
        ]
    assert [(call.name, call.event.input) for call in calls] == [("lookup", {"word": "brisk"})]
    listed = [e async for e in aclient.beta.sessions.events.list(session.id)]
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
    answer = next(e for e in listed if e.type == "user.custom_tool_result")
    assert answer.type == "user.custom_tool_result" and answer.content is not None
    assert answer.content[0].type == "text" and answer.content[0].text == "brisk: quick and energetic"


def test_always_ask_allow_runs_the_tool(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "echo approved"}), Text("It ran."))
    session, recorder = start(client, script, environment, recorders, tools=[ASK_BASH])
    client.beta.sessions.events.send(session.id, events=[say("run it")])
    paused = recorder.idles(1)
    tool_use = next(e for e in paused if e.type == "agent.tool_use")
    assert tool_use.evaluated_permission == "ask" and tool_use.evaluation is not None
    assert tool_use.evaluation.type == "always_ask"
    assert paused[-1].type == "session.status_idle" and paused[-1].stop_reason.type == "requires_action"
    assert paused[-1].stop_reason.event_ids == [tool_use.id]
    confirmed = client.beta.sessions.events.send(
        session.id, events=[{"type": "user.tool_confirmation", "tool_use_id": tool_use.id, "result": "allow"}]
    )
    assert confirmed.data is not None and confirmed.data[0].processed_at is None
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        *PAUSE,
        "user.tool_confirmation",
        "session.status_running",
        "agent.tool_result",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        *PAUSE,
    ]
    result = listed[9]
    assert result.type == "agent.tool_result" and result.is_error is False
    assert result.content is not None and result.content[0].type == "text" and result.content[0].text == "approved"


def test_always_ask_deny_reaches_the_model_with_the_message(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], tmp_path: Any
) -> None:
    script(ToolUse("bash", {"command": "touch /workspace/should-not-exist"}), Text("Understood."))
    session, recorder = start(client, script, environment, recorders, tools=[ASK_BASH])
    client.beta.sessions.events.send(session.id, events=[say("touch it")])
    tool_use = next(e for e in recorder.idles(1) if e.type == "agent.tool_use")
    client.beta.sessions.events.send(
        session.id,
        events=[
            {
                "type": "user.tool_confirmation",
                "tool_use_id": tool_use.id,
                "result": "deny",
                "deny_message": "not on this machine",
            }
        ],
    )
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    result = next(e for e in listed if e.type == "agent.tool_result")
    assert result.type == "agent.tool_result" and result.is_error is True and result.content is not None
    assert result.content[0].type == "text" and "not on this machine" in result.content[0].text
    block = script.requests()[1]["messages"][2]["content"][0]
    assert block["is_error"] is True and "denied" in block["content"][0]["text"]


def test_confirmation_rules(
    client: anthropic.Anthropic, raw: httpx2.Client, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "true"}), Text("ok"))
    session, recorder = start(client, script, environment, recorders, tools=[ASK_BASH])
    client.beta.sessions.events.send(session.id, events=[say("go")])
    paused = recorder.idles(1)
    tool_use = next(e for e in paused if e.type == "agent.tool_use")
    url = f"/v1/sessions/{session.id}/events"
    before = len(list(client.beta.sessions.events.list(session.id)))

    def confirm(**fields: Any) -> httpx2.Response:
        return raw.post(url, json={"events": [{"type": "user.tool_confirmation", **fields}]})

    assert_error(
        confirm(tool_use_id=tool_use.id, result="allow", deny_message="x"), 400, "invalid_request_error", "deny_message"
    )
    assert_error(confirm(tool_use_id="sevt_unknown", result="allow"), 404, "not_found_error", "tool_use_id")
    assert_error(confirm(tool_use_id=paused[0].id, result="allow"), 400, "invalid_request_error", "tool_use_id")
    assert_error(confirm(tool_use_id=tool_use.id, result="maybe"), 400, "invalid_request_error", "result")
    assert len(list(client.beta.sessions.events.list(session.id))) == before  # nothing was appended
    assert confirm(tool_use_id=tool_use.id, result="allow").status_code == 200
    recorder.idles(2)
    assert_error(confirm(tool_use_id=tool_use.id, result="allow"), 400, "invalid_request_error", "not awaiting")


def test_interrupt_during_model_call(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    held = Hold(Text("never seen"))
    script(held, Text("Fresh start."))
    session, recorder = start(client, script, environment, recorders)
    client.beta.sessions.events.send(session.id, events=[say("slow one")])
    assert held.started.wait(10)
    sent = client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}, say("next one")])
    assert sent.data is not None and [e.processed_at for e in sent.data] == [None, None]
    held.release.set()
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "span.model_request_end",
        "user.interrupt",
        *PAUSE,
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        *PAUSE,
    ]
    assert listed[6].type == "session.status_idle" and listed[6].stop_reason.type == "end_turn"
    assert listed[3].type == "span.model_request_end" and listed[3].is_error is False
    last = script.requests()[-1]["messages"]
    assert [m["role"] for m in last] == ["user"] and [b["text"] for b in last[0]["content"]] == ["slow one", "next one"]


def test_interrupt_during_bash_kills_the_command(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "(sleep 31.7; touch late-child) & sleep 31.7; touch late"}))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("sleep")])
    recorder.wait(lambda evs: "agent.tool_use" in types(evs))
    client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "user.interrupt",
        *PAUSE,
    ]
    result = listed[5]
    assert result.type == "agent.tool_result" and result.is_error is True
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
    # The killed process group cannot finish its work later.
    script(ToolUse("bash", {"command": "pgrep -f 'sleep 31.7' || echo none left"}), Text("listed"))
    client.beta.sessions.events.send(session.id, events=[say("what is there?")])
    after = recorder.idles(2)
    ls_result = [e for e in after if e.type == "agent.tool_result"][-1]
    assert ls_result.type == "agent.tool_result" and ls_result.content is not None
    assert ls_result.content[0].type == "text" and ls_result.content[0].text == "none left"


def test_interrupt_of_an_idle_session_is_processed_at_once(
    client: anthropic.Anthropic, agent: Any, environment: Any
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    sent = client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    assert sent.data is not None and sent.data[0].processed_at is not None
    assert client.beta.sessions.retrieve(session.id).status == "idle"


@pytest.mark.parametrize(
    ("events", "status", "mentions"),
    [
        ([], 400, "events"),
        (
            [
                {"type": "user.message", "content": [{"type": "text", "text": "x"}]},
                {"type": "system.message", "content": [{"type": "text", "text": "s"}]},
                {"type": "user.message", "content": [{"type": "text", "text": "y"}]},
            ],
            400,
            "last event",
        ),
        ([{"type": "system.message", "content": [{"type": "text", "text": "s"}]}], 400, "directly follow"),
        ([{"type": "user.tool_result", "tool_use_id": "sevt_x"}], 400, "self_hosted"),
        ([{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_x"}], 404, "custom_tool_use_id"),
        (
            [{"type": "user.define_outcome", "description": "d", "rubric": {"type": "text", "content": "r"}}],
            400,
            "not supported",
        ),
        ([{"type": "user.interrupt", "session_thread_id": "sthr_1"}], 400, "session_thread_id"),
        ([{"type": "user.message", "content": [{"type": "redacted"}]}], 400, "redacted"),
        ([{"type": "user.shout"}], 400, "events[0]"),
    ],
)
def test_invalid_sends_change_nothing(
    client: anthropic.Anthropic,
    raw: httpx2.Client,
    agent: Any,
    environment: Any,
    events: list[Any],
    status: int,
    mentions: str,
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    error_type = "not_found_error" if status == 404 else "invalid_request_error"
    assert_error(raw.post(f"/v1/sessions/{session.id}/events", json={"events": events}), status, error_type, mentions)
    assert list(client.beta.sessions.events.list(session.id)) == []
    assert client.beta.sessions.retrieve(session.id).status == "idle"


def test_archived_session_refuses_events(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.sessions.archive(session.id)
    with pytest.raises(anthropic.ConflictError, match="archived") as caught:
        client.beta.sessions.events.send(session.id, events=[say("hello?")])
    assert caught.value.response.headers["x-should-retry"] == "false"
    wait_status(client, session.id, "terminated")


def test_answering_part_of_a_pause_with_a_message_keeps_it_paused(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("lookup", {"word": "a"}, more=[("lookup", {"word": "b"})]), Text("done"))
    session, recorder = start(client, script, environment, recorders, tools=[LOOKUP])
    client.beta.sessions.events.send(session.id, events=[say("two words")])
    use_a, use_b = recorder.idles(1)[-1].stop_reason.event_ids
    client.beta.sessions.events.send(
        session.id,
        events=[
            {"type": "user.custom_tool_result", "custom_tool_use_id": use_a, "content": []},
            {"type": "system.message", "content": [{"type": "text", "text": "hurry"}]},
        ],
    )
    second_idle = recorder.idles(2)[-1]
    assert second_idle.stop_reason.event_ids == [use_b]
    assert client.beta.sessions.retrieve(session.id).status == "idle"
    client.beta.sessions.events.send(
        session.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": use_b, "content": []}]
    )
    listed = assert_stream_equals_list(recorder.idles(3), client, session.id)
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
    blocks = [b for m in script.requests()[1]["messages"] for b in m["content"] if b["type"] == "text"]
    assert "[system message]\nhurry" in [b["text"] for b in blocks]


def test_whitespace_only_text_is_refused(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with pytest.raises(anthropic.BadRequestError, match="non-whitespace"):
        client.beta.sessions.events.send(session.id, events=[say("   ")])


def test_an_answer_to_a_call_of_an_interrupted_turn_is_refused_in_the_next(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    """An interrupt ends the turn with a custom call unanswered; a late answer must not land in a later turn
    (it would sit after messages the model already saw with the call closed)."""
    lookup = {"type": "custom", "name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}
    held = Hold(Text("Second turn."))
    script(ToolUse("bash", {"command": "sleep 27.9"}, more=[("lookup", {})]), held)
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET, lookup])
    client.beta.sessions.events.send(session.id, events=[say("go")])
    first = recorder.wait(lambda evs: "agent.custom_tool_use" in types(evs))
    lookup_call = next(e for e in first if e.type == "agent.custom_tool_use")
    client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    recorder.idles()
    client.beta.sessions.events.send(session.id, events=[say("again")])
    assert held.started.wait(10)  # the next turn is running
    late = {"type": "user.custom_tool_result", "custom_tool_use_id": lookup_call.id, "content": []}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.sessions.events.send(session.id, events=[late])
    assert "is not awaiting an answer" in refused.value.message
    held.release.set()
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)
    assert "user.custom_tool_result" not in types(listed)
    assert listed[-1].stop_reason.type == "end_turn"
