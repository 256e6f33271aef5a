"""An agent's custom skills in its sandbox, end to end: mounted read-only at
/mnt/skills/<name>, scripts executable, announced in the system prompt, the newest version for ``latest``."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from agenthost.testing.fake_anthropic import Text, ToolUse
from tests.conftest import BWRAP_PROBLEM, Script
from tests.engine.conftest import Recorder, assert_stream_equals_list
from tests.engine.test_turns import TOOLSET, say

pytestmark = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"the /mnt/skills mount needs a sandbox: {BWRAP_PROBLEM}"
)


def _skill_files(version: str) -> list[Any]:
    skill = f"---\nname: greeter\ndescription: Greets people by name ({version}).\n---\n# Greeter {version}\n"
    script = f"#!/bin/sh\necho hello $1 from {version}\n"
    return [
        ("greeter/SKILL.md", skill.encode(), "text/markdown"),
        ("greeter/scripts/greet.sh", script.encode(), "text/x-sh"),
    ]


def _results(listed: list[Any]) -> list[tuple[bool, str]]:
    return [(bool(e.is_error), e.content[0].text) for e in listed if e.type == "agent.tool_result"]


def _turn(client: anthropic.Anthropic, session: Any, recorders: list[Recorder], count: int = 1) -> list[Any]:
    recorder = next((r for r in recorders if r.session_id == session.id), None)
    if recorder is None:
        recorder = Recorder(client, session.id)
        recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("greet Ada")])
    return assert_stream_equals_list(recorder.idles(count), client, session.id)


def test_skills_are_mounted_announced_and_follow_latest(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    skill = client.beta.skills.create(files=_skill_files("v1"))
    agent = script.agent(client, tools=[TOOLSET], skills=[{"type": "custom", "skill_id": skill.id}])
    script(
        ToolUse("read", {"file_path": "/mnt/skills/greeter/SKILL.md"}),
        ToolUse("bash", {"command": "/mnt/skills/greeter/scripts/greet.sh Ada; touch /mnt/skills/greeter/x"}),
        ToolUse("write", {"file_path": "/mnt/skills/greeter/SKILL.md", "content": "mine now"}),
        Text("Greeted."),
    )
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    read, bash, write = _results(_turn(client, session, recorders))
    assert read == (
        False,
        "     1\t---\n     2\tname: greeter\n     3\tdescription: Greets people by name (v1).\n"
        "     4\t---\n     5\t# Greeter v1",
    )
    assert bash[1].startswith("hello Ada from v1\n") and "Read-only file system" in bash[1]
    assert write[0] is True and "read-only" in write[1]
    note = script.requests()[0]["system"][-1]["text"]
    assert "- greeter (/mnt/skills/greeter/SKILL.md): Greets people by name (v1)." in note

    # A new version becomes `latest`: the next run mounts and announces it.
    client.beta.skills.versions.create(skill.id, files=_skill_files("v2"))
    script(ToolUse("bash", {"command": "/mnt/skills/greeter/scripts/greet.sh Ada"}), Text("Again."))
    listed = _turn(client, session, recorders, count=2)
    assert _results(listed)[-1] == (False, "hello Ada from v2")
    assert "(v2)" in script.requests()[-1]["system"][-1]["text"]


def test_a_pinned_version_stays(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    skill = client.beta.skills.create(files=_skill_files("v1"))
    pinned = skill.latest_version_id
    client.beta.skills.versions.create(skill.id, files=_skill_files("v2"))
    agent = script.agent(client, tools=[TOOLSET], skills=[{"type": "custom", "skill_id": skill.id, "version": pinned}])
    script(ToolUse("bash", {"command": "/mnt/skills/greeter/scripts/greet.sh Ada"}), Text("Pinned."))
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert _results(_turn(client, session, recorders)) == [(False, "hello Ada from v1")]
