"""A sandbox's files outlive its processes and the server, and go with the session (issue #4 point 7).

Real server processes: one writes files in a session's workspace and is stopped; the
next one, started on the same data, finds them, removes the files of sessions that no
longer exist, and deletes a session's files with the session.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anthropic
import pytest

from agenthost.sandbox.cgroups import detect as detect_cgroups
from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.conftest import Script, needs_bwrap, sandbox_dir, wait_until
from tests.engine.conftest import ONE_TOOL_TURN, Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say
from tests.processes import KEY, Agenthost, free_port

pytestmark = needs_bwrap


def test_files_survive_a_restart_and_go_with_the_session(
    fake: FakeAnthropic,
    script: Script,
    tmp_path: Path,
    processes: list[Agenthost],
    request: pytest.FixtureRequest,
) -> None:
    sandboxes = sandbox_dir()
    try:
        script(
            ToolUse("bash", {"command": "echo persisted > kept.txt && echo done > /mnt/session/outputs/out.txt"}),
            Text("written"),
            ToolUse("bash", {"command": "cat kept.txt /mnt/session/outputs/out.txt"}),
            Text("read"),
        )
        port = free_port()
        processes.append(first := Agenthost(["serve"], tmp_path, port=port, sandbox_dir=str(sandboxes)))
        client = anthropic.Anthropic(base_url=first.url, api_key=KEY, max_retries=0, _strict_response_validation=True)
        request.addfinalizer(client.close)
        env = client.beta.environments.create(name="restart")
        agent = client.beta.agents.create(model="claude-opus-4-7", name="a", system=script.system, tools=[TOOLSET])
        session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
        recorder = Recorder(client, session.id)
        try:
            client.beta.sessions.events.send(session.id, events=[say("write")])
            first_turn = assert_stream_equals_list(recorder.idles(), client, session.id)
        finally:
            recorder.close()
        assert types(first_turn) == ONE_TOOL_TURN
        first.stop()

        orphan = sandboxes / "sesn_orphan0000000000000000000" / "workspace"
        orphan.mkdir(parents=True)  # files of a session the store does not know
        tree = detect_cgroups() if os.geteuid() == 0 else None
        # The cgroups of a server that died (no pid is 4294967: pid_max is at most 2^22).
        leftovers = [parent / "4294967.sesn_orphan" for parent in tree.parents()] if tree else []
        for path in leftovers:
            path.mkdir()
        processes.append(second := Agenthost(["serve"], tmp_path, port=port, sandbox_dir=str(sandboxes)))
        assert second.url == first.url
        assert not orphan.parent.exists()  # reconciled at start
        assert not any(path.exists() for path in leftovers)
        recorder = Recorder(client, session.id)
        try:
            client.beta.sessions.events.send(session.id, events=[say("read")])
            both = assert_stream_equals_list(first_turn + recorder.idles(), client, session.id)
        finally:
            recorder.close()
        assert types(both) == ONE_TOOL_TURN * 2
        result = both[-6]
        assert result.type == "agent.tool_result" and result.is_error is False
        assert result.content[0].text == "persisted\ndone"

        client.beta.sessions.delete(session.id)
        wait_until(lambda: not (sandboxes / session.id).exists())
    finally:
        shutil.rmtree(sandboxes, ignore_errors=True)
