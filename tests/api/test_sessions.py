"""Sessions through the official SDK in strict mode."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from agenthost.testing.fake_anthropic import Text
from tests.conftest import AGENT, Script, assert_error, wait_status

TOOLSET = {"type": "agent_toolset_20260401"}


def test_create_pins_the_latest_agent_version(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    client.beta.agents.update(agent.id, system="v2 prompt")
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title="t", metadata={"k": "v"})
    assert session.type == "session" and session.id.startswith("sesn_")
    assert session.status == "idle"
    assert session.agent.id == agent.id and session.agent.version == 2 and session.agent.system == "v2 prompt"
    assert session.agent.type == "agent" and session.agent.multiagent is None
    assert session.environment_id == environment.id and session.title == "t" and session.metadata == {"k": "v"}
    assert session.resources == [] and session.vault_ids == [] and session.outcome_evaluations == []
    assert session.budget is None and session.deployment_id is None and session.archived_at is None
    assert session.usage.input_tokens == 0 and session.usage.output_tokens == 0
    assert session.stats.active_seconds == 0.0
    # Later agent changes do not move the session's snapshot.
    client.beta.agents.update(agent.id, system="v3 prompt")
    assert client.beta.sessions.retrieve(session.id).agent.system == "v2 prompt"


def test_create_with_a_pinned_version(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    client.beta.agents.update(agent.id, name="newer")
    session = client.beta.sessions.create(
        agent={"type": "agent", "id": agent.id, "version": 1}, environment_id=environment.id
    )
    assert session.agent.version == 1 and session.agent.name == agent.name
    with pytest.raises(anthropic.NotFoundError, match="version 9"):
        client.beta.sessions.create(
            agent={"type": "agent", "id": agent.id, "version": 9}, environment_id=environment.id
        )


def test_agent_with_overrides_replaces_wholesale(client: anthropic.Anthropic, environment: Any) -> None:
    agent = client.beta.agents.create(
        model={"id": "claude-opus-4-7", "effort": "max"},
        name="base",
        system="base prompt",
        tools=[TOOLSET, {"type": "custom", "name": "c", "description": "d", "input_schema": {"type": "object"}}],
        skills=[{"type": "anthropic", "skill_id": "pdf"}],
    )
    session = client.beta.sessions.create(
        agent={
            "type": "agent_with_overrides",
            "id": agent.id,
            "model": "claude-haiku-4-5",
            "system": None,
            "tools": [TOOLSET],
        },
        environment_id=environment.id,
    )
    snap = session.agent
    assert snap.id == agent.id and snap.version == 1
    assert snap.model.id == "claude-haiku-4-5" and snap.model.effort is not None and snap.model.effort.type == "high"
    assert snap.system is None
    assert [t.type for t in snap.tools] == ["agent_toolset_20260401"]
    assert [s.skill_id for s in snap.skills] == ["pdf"]  # omitted: inherited
    assert client.beta.agents.retrieve(agent.id).system == "base prompt"  # the agent is untouched
    with pytest.raises(anthropic.BadRequestError, match="read tool"):
        client.beta.sessions.create(
            agent={"type": "agent_with_overrides", "id": agent.id, "tools": []}, environment_id=environment.id
        )


def test_model_override_cannot_be_null(raw: httpx2.Client, agent: Any, environment: Any) -> None:
    body = {"agent": {"type": "agent_with_overrides", "id": agent.id, "model": None}, "environment_id": environment.id}
    error = assert_error(raw.post("/v1/sessions", json=body), 400, "invalid_request_error", "agent.model")
    assert error["details"]["error_code"] == "agent_model_required"


def test_initial_events_are_the_first_events_and_start_the_first_turn(
    client: anthropic.Anthropic, environment: Any, script: Script
) -> None:
    script(Text("Got both."))
    agent = script.agent(client)
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=environment.id,
        initial_events=[
            {"type": "user.message", "content": [{"type": "text", "text": "first"}]},
            {
                "type": "user.message",
                "content": [
                    {"type": "text", "text": "second"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "data": "notes", "media_type": "text/plain"},
                        "title": "Notes",
                    },
                ],
            },
        ],
    )
    assert session.status == "running"  # initial events: born running
    wait_status(client, session.id, "idle")
    events = list(client.beta.sessions.events.list(session.id))
    assert [e.type for e in events] == [
        "user.message",
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    first, second = events[0], events[1]
    assert first.type == "user.message" and second.type == "user.message"
    assert first.processed_at is not None and second.processed_at is not None
    assert first.content[0].type == "text" and first.content[0].text == "first"
    assert [b.type for b in second.content] == ["text", "image", "document"]
    (request,) = script.requests()
    assert request["messages"][0]["role"] == "user"
    assert [b["type"] for b in request["messages"][0]["content"]] == ["text", "text", "image", "document"]


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        ({"resources": [{"type": "memory_store", "memory_store_id": "m1", "access": "all"}]}, "resources[0].access"),
        ({"vault_ids": ["vlt_1", "vlt_1"]}, "vault_ids"),
        ({"budget": {"type": "limit", "max_list_cost": {"amount": "100", "currency": "USD"}}}, "budget"),
        (
            {
                "initial_events": [
                    {"type": "user.define_outcome", "description": "d", "rubric": {"type": "text", "content": "r"}}
                ]
            },
            "initial_events[0]",
        ),
        ({"initial_events": [{"type": "user.interrupt"}]}, "initial_events[0]"),
        (
            {"initial_events": [{"type": "user.message", "content": [{"type": "redacted"}]}]},
            "initial_events[0].content[0]",
        ),
        ({"initial_events": [{"type": "user.message", "content": []}]}, "initial_events[0].content"),
        (
            {"initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "x"}]}] * 51},
            "initial_events",
        ),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"title": 5}, "title"),
    ],
)
def test_unsupported_or_invalid_create_changes_nothing(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any, extra: dict[str, Any], mentions: str
) -> None:
    body = {"agent": agent.id, "environment_id": environment.id, **extra}
    assert_error(raw.post("/v1/sessions", json=body), 400, "invalid_request_error", mentions)
    assert list(client.beta.sessions.list(include_archived=True)) == []


def test_unknown_references_are_404(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    with pytest.raises(anthropic.NotFoundError, match="agent"):
        client.beta.sessions.create(agent="agent_nope", environment_id=environment.id)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.beta.sessions.create(agent=agent.id, environment_id="env_nope")
    assert caught.value.error_code == "environment_not_found"
    archived = client.beta.agents.create(**AGENT)
    client.beta.agents.archive(archived.id)
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.sessions.create(agent=archived.id, environment_id=environment.id)
    assert list(client.beta.sessions.list(include_archived=True)) == []


def test_update_title_metadata_and_tools_logs_session_updated(
    client: anthropic.Anthropic, agent: Any, environment: Any
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, metadata={"a": "1"})
    same = client.beta.sessions.update(session.id, metadata={"a": "1"})
    assert same.updated_at == session.updated_at
    updated = client.beta.sessions.update(session.id, title="named", metadata={"a": None, "b": "2"})
    assert updated.title == "named" and updated.metadata == {"b": "2"}
    retooled = client.beta.sessions.update(session.id, agent={"tools": [TOOLSET]})
    assert [t.type for t in retooled.agent.tools] == ["agent_toolset_20260401"]
    assert client.beta.agents.retrieve(agent.id).tools == []  # session-local change
    events = list(client.beta.sessions.events.list(session.id))
    assert [e.type for e in events] == ["session.updated", "session.updated"]
    first, second = events
    assert first.type == "session.updated" and second.type == "session.updated"
    assert first.title == "named" and first.metadata == {"b": "2"} and first.agent is None
    assert second.agent is not None and second.title is None
    assert all(e.processed_at is not None for e in events)


def test_update_refuses_vault_ids_and_budget(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with pytest.raises(anthropic.BadRequestError, match="vault_ids"):
        client.beta.sessions.update(session.id, vault_ids=["vlt_1"])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.sessions.update(
            session.id, budget={"type": "limit", "max_list_cost": {"amount": "1", "currency": "USD"}}
        )
    assert caught.value.error_code == "budget_create_only"


def test_archive_terminates_and_makes_read_only(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    archived = client.beta.sessions.archive(session.id)
    assert archived.archived_at is not None and archived.status == "terminated"
    assert client.beta.sessions.archive(session.id).archived_at == archived.archived_at
    with pytest.raises(anthropic.ConflictError, match="archived"):
        client.beta.sessions.update(session.id, title="late")
    assert [e.type for e in client.beta.sessions.events.list(session.id)] == ["session.status_terminated"]
    assert list(client.beta.sessions.list()) == []
    assert [s.id for s in client.beta.sessions.list(include_archived=True)] == [session.id]


def test_delete_removes_the_session_and_its_events_only(
    client: anthropic.Anthropic, environment: Any, script: Script
) -> None:
    script(Text("hello"))
    agent = script.agent(client)
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=environment.id,
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}],
    )
    wait_status(client, session.id, "idle")
    deleted = client.beta.sessions.delete(session.id)
    assert deleted.id == session.id and deleted.type == "session_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve(session.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.events.list(session.id)
    assert client.beta.agents.retrieve(agent.id).id == agent.id
    assert client.beta.environments.retrieve(environment.id).id == environment.id


def test_archived_agent_does_not_break_its_sessions(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.agents.archive(agent.id)
    assert client.beta.sessions.retrieve(session.id).agent.id == agent.id
    client.beta.sessions.update(session.id, title="still works")


def test_list_filters(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    other = client.beta.agents.create(**AGENT)
    a1 = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    client.beta.agents.update(agent.id, name="v2")
    a2 = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    b = client.beta.sessions.create(agent=other.id, environment_id=environment.id)
    assert [s.id for s in client.beta.sessions.list()] == [b.id, a2.id, a1.id]
    assert [s.id for s in client.beta.sessions.list(order="asc")] == [a1.id, a2.id, b.id]
    assert [s.id for s in client.beta.sessions.list(agent_id=agent.id)] == [a2.id, a1.id]
    assert [s.id for s in client.beta.sessions.list(agent_id=agent.id, agent_version=1)] == [a1.id]
    assert [s.id for s in client.beta.sessions.list(statuses=["idle"])] == [b.id, a2.id, a1.id]
    assert list(client.beta.sessions.list(statuses=["running", "rescheduling"])) == []
    assert [s.id for s in client.beta.sessions.list(created_at_gt=a2.created_at)] == [b.id]
    assert [s.id for s in client.beta.sessions.list(created_at_lt=a2.created_at, order="asc")] == [a1.id]
    assert list(client.beta.sessions.list(deployment_id="depl_1")) == []
    assert list(client.beta.sessions.list(memory_store_id="memstore_1")) == []


def test_bidirectional_pagination(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    ids = [client.beta.sessions.create(agent=agent.id, environment_id=environment.id).id for _ in range(5)]
    newest_first = ids[::-1]
    first = client.beta.sessions.list(limit=2)
    assert [s.id for s in first.data] == newest_first[:2]
    assert first.prev_page is None and first.next_page is not None
    second = client.beta.sessions.list(limit=2, page=first.next_page)
    assert [s.id for s in second.data] == newest_first[2:4]
    assert second.prev_page is not None
    back = client.beta.sessions.list(limit=2, page=second.prev_page)
    assert [s.id for s in back.data] == newest_first[:2]
    assert back.prev_page is None and back.next_page is not None
    last = client.beta.sessions.list(limit=2, page=second.next_page)
    assert [s.id for s in last.data] == newest_first[4:] and last.next_page is None
    assert [s.id for s in client.beta.sessions.list(limit=2)] == newest_first
    with pytest.raises(anthropic.BadRequestError, match="order"):
        client.beta.sessions.list(limit=2, page=first.next_page, order="asc")


async def test_async_session_lifecycle(aclient: anthropic.AsyncAnthropic) -> None:
    agent = await aclient.beta.agents.create(**AGENT)
    env = await aclient.beta.environments.create(name="async-env")
    session = await aclient.beta.sessions.create(agent=agent.id, environment_id=env.id, title="a")
    assert (await aclient.beta.sessions.retrieve(session.id)).title == "a"
    assert [s.id async for s in aclient.beta.sessions.list()] == [session.id]
    archived = await aclient.beta.sessions.archive(session.id)
    assert archived.status == "terminated"
    deleted = await aclient.beta.sessions.delete(session.id)
    assert deleted.type == "session_deleted"


def test_event_list_filters_and_limits(
    client: anthropic.Anthropic, environment: Any, raw: httpx2.Client, script: Script
) -> None:
    script(Text("ok"))
    agent = script.agent(client)
    text = [{"type": "user.message", "content": [{"type": "text", "text": str(i)}]} for i in range(3)]
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, initial_events=text)
    wait_status(client, session.id, "idle")
    client.beta.sessions.update(session.id, title="x")
    all_events = list(client.beta.sessions.events.list(session.id, limit=1000))
    assert [e.type for e in all_events][:3] == ["user.message"] * 3
    assert all_events[-1].type == "session.updated"
    paged = list(client.beta.sessions.events.list(session.id, limit=1))
    assert [e.id for e in paged] == [e.id for e in all_events]
    desc = list(client.beta.sessions.events.list(session.id, order="desc"))
    assert [e.id for e in desc] == [e.id for e in all_events][::-1]
    only = list(client.beta.sessions.events.list(session.id, types=["session.updated", "agent.message"]))
    assert [e.type for e in only] == ["agent.message", "session.updated"]
    assert_error(
        raw.get(f"/v1/sessions/{session.id}/events", params={"types[]": "bogus"}),
        400,
        "invalid_request_error",
        "types[0]",
    )
    assert_error(
        raw.get(f"/v1/sessions/{session.id}/events", params={"limit": 1001}), 400, "invalid_request_error", "limit"
    )
