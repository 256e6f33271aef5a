"""Memory stores attached to sessions, end to end: mounted at /mnt/memory/<slug>, read
with the file tools, and every write the agent makes becomes a memory version that other sessions see."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from agenthost.testing.fake_anthropic import Text, ToolUse
from tests.conftest import AGENT, BWRAP_PROBLEM, Script, assert_error
from tests.engine.conftest import Recorder, assert_stream_equals_list
from tests.engine.test_turns import TOOLSET, say

needs_sandbox = pytest.mark.skipif(
    BWRAP_PROBLEM is not None, reason=f"the /mnt/memory mounts need a sandbox: {BWRAP_PROBLEM}"
)


def _results(listed: list[Any]) -> list[tuple[bool, str]]:
    return [(bool(e.is_error), "\n".join(b.text for b in e.content)) for e in listed if e.type == "agent.tool_result"]


def _run(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], resources: list[Any]
) -> tuple[Any, list[Any]]:
    agent = script.agent(client, tools=[TOOLSET])
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, resources=resources)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("go")])
    return session, assert_stream_equals_list(recorder.idles(), client, session.id)


@needs_sandbox
def test_agent_reads_and_writes_memories_which_other_sessions_see(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    store = client.beta.memory_stores.create(name="User Preferences", description="What the user likes")
    first = client.beta.memory_stores.memories.create(store.id, path="/style/tone.md", content="be brief\n")
    root = "/mnt/memory/user-preferences"
    script(
        ToolUse("read", {"file_path": f"{root}/style/tone.md"}),
        ToolUse("write", {"file_path": f"{root}/projects/alpha.md", "content": "alpha ships friday\n"}),
        ToolUse("bash", {"command": f"echo 'and kind' >> {root}/style/tone.md && rm -f {root}/nothing"}),
        Text("Noted."),
    )
    resources = [{"type": "memory_store", "memory_store_id": store.id, "instructions": "Keep it tidy."}]
    session, listed = _run(client, script, environment, recorders, resources)
    read, write, bash = _results(listed)
    assert read == (False, "     1\tbe brief")
    assert write[0] is False and bash == (False, "")
    system = script.requests()[0]["system"]
    note = system[-1]["text"]
    assert f"{root} (read_write): User Preferences. What the user likes" in note and "Keep it tidy." in note

    memories = {m.path: m for m in client.beta.memory_stores.memories.list(store.id)}
    assert sorted(memories) == ["/projects/alpha.md", "/style/tone.md"]
    tone = client.beta.memory_stores.memories.retrieve(first.id, memory_store_id=store.id)
    assert tone.content == "be brief\nand kind\n"
    versions = list(client.beta.memory_stores.memory_versions.list(store.id))
    by_session = [v for v in versions if v.created_by is not None and v.created_by.type == "session_actor"]
    assert sorted((v.operation, v.path) for v in by_session) == [
        ("created", "/projects/alpha.md"),
        ("modified", "/style/tone.md"),
    ]
    assert {v.created_by.session_id for v in by_session} == {session.id}  # type: ignore[union-attr]

    # A second session on the same store sees the first one's writes (and its own writes are versions too).
    script(ToolUse("bash", {"command": f"cat {root}/projects/alpha.md; rm {root}/projects/alpha.md"}), Text("ok"))
    attach = [{"type": "memory_store", "memory_store_id": store.id}]
    second, later = _run(client, script, environment, recorders, attach)
    assert _results(later) == [(False, "alpha ships friday")]
    assert [m.path for m in client.beta.memory_stores.memories.list(store.id)] == ["/style/tone.md"]
    deleted = [v for v in client.beta.memory_stores.memory_versions.list(store.id) if v.operation == "deleted"]
    assert len(deleted) == 1 and deleted[0].created_by is not None and deleted[0].created_by.type == "session_actor"
    assert deleted[0].created_by.session_id == second.id
    listed_sessions = client.beta.sessions.list(memory_store_id=store.id)
    assert len(listed_sessions.data) == 2


@needs_sandbox
def test_read_only_store_refuses_writes_and_changes_nothing(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    store = client.beta.memory_stores.create(name="Policies")
    client.beta.memory_stores.memories.create(store.id, path="/rules.md", content="no friday deploys")
    root = "/mnt/memory/policies"
    script(
        ToolUse("write", {"file_path": f"{root}/rules.md", "content": "deploy whenever"}),
        ToolUse("bash", {"command": f"echo x > {root}/new.md; echo y > /mnt/memory/stray.md; cat {root}/rules.md"}),
        Text("Read only."),
    )
    resources = [{"type": "memory_store", "memory_store_id": store.id, "access": "read_only"}]
    _, listed = _run(client, script, environment, recorders, resources)
    write, bash = _results(listed)
    assert write[0] is True and "read-only" in write[1]
    assert bash[1].count("Read-only file system") == 2 and bash[1].endswith("no friday deploys")
    assert [m.path for m in client.beta.memory_stores.memories.list(store.id)] == ["/rules.md"]
    assert len(list(client.beta.memory_stores.memory_versions.list(store.id))) == 1
    assert "(read_only)" in script.requests()[0]["system"][-1]["text"]


@needs_sandbox
def test_a_write_the_store_refuses_is_undone_and_told_to_the_agent(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    store = client.beta.memory_stores.create(name="Notes")
    client.beta.memory_stores.memories.create(store.id, path="/keep.md", content="kept")
    root = "/mnt/memory/notes"
    script(
        ToolUse(
            "bash",
            {
                "command": f"head -c 200000 /dev/zero | tr '\\0' a > {root}/big.md; "
                f"printf '\\xff\\xfe' > {root}/keep.md; echo fine > {root}/ok.md"
            },
        ),
        ToolUse("bash", {"command": f"ls {root}; cat {root}/keep.md"}),
        Text("Some were refused."),
    )
    _, listed = _run(client, script, environment, recorders, [{"type": "memory_store", "memory_store_id": store.id}])
    first, second = _results(listed)
    assert f"{root}/big.md was not saved to the memory store: a memory holds at most 102400 bytes" in first[1]
    assert f"{root}/keep.md was not saved to the memory store: memories are UTF-8 text" in first[1]
    assert second == (False, "keep.md\nok.md\nkept")  # the refused changes were undone on disk
    memories = {m.path: m for m in client.beta.memory_stores.memories.list(store.id, view="full")}
    assert {path: m.content for path, m in memories.items()} == {"/keep.md": "kept", "/ok.md": "fine\n"}


def test_attaching_memory_stores_checks_them(
    client: anthropic.Anthropic, raw: httpx2.Client, other_client: anthropic.Anthropic
) -> None:
    agent = client.beta.agents.create(**AGENT)
    env = client.beta.environments.create(name="memory-env")
    store = client.beta.memory_stores.create(name="Team Notes", description="shared")
    twin = client.beta.memory_stores.create(name="team notes!")  # the same directory name
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        resources=[
            {"type": "memory_store", "memory_store_id": store.id},
            {"type": "memory_store", "memory_store_id": twin.id, "access": "read_only", "instructions": "look only"},
        ],
    )
    first, second = session.resources
    assert first.type == "memory_store" and second.type == "memory_store"
    assert (first.memory_store_id, first.access, first.mount_path) == (store.id, "read_write", "/mnt/memory/team-notes")
    assert first.name == "Team Notes" and first.description == "shared" and first.instructions is None
    assert (second.access, second.mount_path) == ("read_only", "/mnt/memory/team-notes-2")
    assert second.instructions == "look only"
    assert [s.id for s in client.beta.sessions.list(memory_store_id=twin.id)] == [session.id]
    assert list(client.beta.sessions.list(memory_store_id="memstore_%")) == []

    base = {"agent": agent.id, "environment_id": env.id}
    foreign = other_client.beta.memory_stores.create(name="theirs")
    archived = client.beta.memory_stores.create(name="old")
    client.beta.memory_stores.archive(archived.id)
    cases = [
        ([{"type": "memory_store", "memory_store_id": foreign.id}], 404, "resources[0].memory_store_id"),
        ([{"type": "memory_store", "memory_store_id": archived.id}], 400, "archived"),
        ([{"type": "memory_store", "memory_store_id": store.id}] * 2, 400, "attached twice"),
        ([{"type": "memory_store", "memory_store_id": store.id, "access": "all"}], 400, "resources[0].access"),
        ([{"type": "memory_store", "memory_store_id": store.id, "instructions": "x" * 4097}], 400, "instructions"),
    ]
    for resources, status, mention in cases:
        response = raw.post("/v1/sessions", json={**base, "resources": resources})
        assert_error(response, status, "not_found_error" if status == 404 else "invalid_request_error", mention)
    many = [client.beta.memory_stores.create(name=f"m{i}") for i in range(9)]
    response = raw.post(
        "/v1/sessions",
        json={**base, "resources": [{"type": "memory_store", "memory_store_id": m.id} for m in many]},
    )
    assert_error(response, 400, "invalid_request_error", "at most 8")
    assert [s.id for s in client.beta.sessions.list()] == [session.id]
