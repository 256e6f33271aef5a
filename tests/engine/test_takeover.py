"""A server killed mid-turn: the restarted engine takes the turn over and finishes it.

Real processes: `agenthost serve` is started, SIGKILLed while a bash call runs, and started
again on the same SQLite file: the session is rescheduled, then the turn goes on. (The full
crash-recovery suite on PostgreSQL is issue #5.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import anthropic
import pytest

from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.conftest import BWRAP_PROBLEM, Script, wait_until
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say
from tests.processes import KEY, Agenthost, free_port, running


def _start_session(
    tmp_path: Path, processes: list[Agenthost], request: pytest.FixtureRequest, script: Script, tools: Any
) -> tuple[Agenthost, anthropic.Anthropic, Any, Recorder]:
    """A server process, a client of it, and a session of a scripted agent with ``tools``, recorded."""
    processes.append(first := Agenthost(["serve"], tmp_path, port=free_port()))
    client = anthropic.Anthropic(base_url=first.url, api_key=KEY, max_retries=0, _strict_response_validation=True)
    request.addfinalizer(client.close)
    env = client.beta.environments.create(name="crash")
    agent = client.beta.agents.create(model="claude-opus-4-7", name="a", system=script.system, tools=[tools])
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    return first, client, session, Recorder(client, session.id)


def _restart_and_resume(
    tmp_path: Path, first: Agenthost, processes: list[Agenthost], recorder: Recorder, last_seen: str, command: str
) -> list[Any]:
    """Start the next server on the killed one's data and port; stream from ``last_seen`` to the idle."""
    recorder.close(wait=False)
    assert first.url is not None
    processes.append(Agenthost(["serve"], tmp_path, port=int(first.url.rpartition(":")[2])))
    resumed = Recorder(recorder.client, recorder.session_id, extra_headers={"Last-Event-ID": last_seen})
    try:
        return resumed.idles()
    finally:
        resumed.close()
        subprocess.run(["pkill", "-f", command], check=False)  # the local backend leaves an orphan


def test_a_killed_server_s_turn_is_finished_by_the_next_one(
    fake: FakeAnthropic,
    script: Script,
    tmp_path: Path,
    processes: list[Agenthost],
    request: pytest.FixtureRequest,
) -> None:
    assert os.environ["ANTHROPIC_BASE_URL"] == fake.url  # the server processes reach the fake model
    script(
        ToolUse("bash", {"command": "echo before > a.txt && sleep 29.3"}, more=[("read", {"file_path": "a.txt"})]),
        Text("Recovered."),
    )
    first, client, session, recorder = _start_session(tmp_path, processes, request, script, TOOLSET)
    client.beta.sessions.events.send(session.id, events=[say("sleep a while")])
    before = recorder.wait(lambda evs: "agent.tool_use" in types(evs))
    wait_until(lambda: running("sleep 29.3"))
    first.kill()
    if BWRAP_PROBLEM is None:  # --die-with-parent: a SIGKILLed server leaves no sandbox process behind
        wait_until(lambda: not running("sleep 29.3"))
    after = _restart_and_resume(tmp_path, first, processes, recorder, before[-1].id, "sleep 29.3")
    listed = assert_stream_equals_list(before + after, client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "agent.tool_use",
        "span.model_request_end",
        "session.status_rescheduled",  # the lease expired: rescheduled, then taken over
        "session.status_running",
        "agent.tool_result",
        "agent.tool_result",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    result: Any = listed[8]
    assert result.type == "agent.tool_result" and result.is_error is True
    assert "was not run again" in result.content[0].text  # bash may have had effects: never re-run
    reread: Any = listed[9]
    assert reread.tool_use_id == listed[4].id and reread.is_error is False
    assert reread.content[0].text == "     1\tbefore"  # a read-only call is simply run
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
    assert client.beta.sessions.retrieve(session.id).status == "idle"


def test_a_call_the_user_denied_is_never_run_by_the_takeover(
    fake: FakeAnthropic,
    script: Script,
    tmp_path: Path,
    processes: list[Agenthost],
    request: pytest.FixtureRequest,
) -> None:
    """The server dies while the user's allowed call runs; the read-only call they denied stays denied."""
    ask_all = {
        "type": "agent_toolset_20260401",
        "configs": [
            {"name": "bash", "permission_policy": {"type": "always_ask"}},
            {"name": "read", "permission_policy": {"type": "always_ask"}},
        ],
    }
    script(
        ToolUse("bash", {"command": "sleep 28.7"}, more=[("read", {"file_path": "/etc/hostname"})]),
        Text("Understood."),
    )
    first, client, session, recorder = _start_session(tmp_path, processes, request, script, ask_all)
    client.beta.sessions.events.send(session.id, events=[say("look")])
    paused = recorder.idles()
    bash_call, read_call = [e for e in paused if e.type == "agent.tool_use"]
    confirm = [
        {"type": "user.tool_confirmation", "tool_use_id": bash_call.id, "result": "allow"},
        {"type": "user.tool_confirmation", "tool_use_id": read_call.id, "result": "deny", "deny_message": "no"},
    ]
    client.beta.sessions.events.send(session.id, events=confirm)
    wait_until(lambda: running("sleep 28.7"))
    before = recorder.wait(lambda evs: types(evs).count("session.status_running") >= 2)
    first.kill()
    after = _restart_and_resume(tmp_path, first, processes, recorder, before[-1].id, "sleep 28.7")
    listed = assert_stream_equals_list(before + after, client, session.id)
    results = {e.tool_use_id: e for e in listed if e.type == "agent.tool_result"}
    assert "was not run again" in results[bash_call.id].content[0].text
    denied = results[read_call.id]
    assert denied.is_error is True
    assert denied.content[0].text == "Permission to use read was denied by the user. Reason: no"
    assert listed[-1].type == "session.status_idle" and listed[-1].stop_reason.type == "end_turn"
