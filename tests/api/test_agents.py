"""Agents through the official SDK in strict mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, assert_error

FULL_TOOLS: list[Any] = [
    {
        "type": "agent_toolset_20260401",
        "default_config": {"enabled": False},
        "configs": [
            {"name": "bash", "enabled": True, "permission_policy": {"type": "always_ask"}},
            {"name": "read", "enabled": True},
            {"name": "write", "type": "write", "enabled": True},
            {"name": "edit"},
            {"name": "glob", "permission_policy": {"type": "auto"}},
            {"name": "grep", "enabled": True},
            {
                "name": "web_fetch",
                "enabled": True,
                "allowed_domains": ["docs.example.com"],
                "max_content_tokens": 5000,
                "url_sources": {
                    "user_input": "all",
                    "client_tool_results": {"type": "only", "tools": [{"type": "tool_reference", "name": "lookup"}]},
                },
            },
            {"name": "web_search", "blocked_domains": ["ads.example.com"]},
        ],
    },
    {
        "type": "mcp_toolset",
        "mcp_server_name": "docs",
        "configs": [{"name": "search", "permission_policy": {"type": "always_allow"}}],
    },
    {
        "type": "custom",
        "name": "lookup",
        "description": "Look a word up",
        "input_schema": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
            "additionalProperties": False,
        },
    },
]


def test_create_fills_server_defaults(client: anthropic.Anthropic) -> None:
    agent = client.beta.agents.create(
        model="claude-opus-4-7", name="minimal", tools=[{"type": "agent_toolset_20260401"}]
    )
    assert agent.type == "agent" and agent.version == 1 and agent.id.startswith("agent_")
    assert agent.model.id == "claude-opus-4-7"
    assert agent.model.effort is not None and agent.model.effort.type == "high"
    assert agent.model.speed == "standard" and agent.model.inference_geo is None
    toolset = agent.tools[0]
    assert toolset.type == "agent_toolset_20260401" and toolset.configs == []
    assert toolset.default_config.enabled is True
    assert toolset.default_config.permission_policy.type == "always_allow"
    assert agent.mcp_servers == [] and agent.skills == [] and agent.metadata == {}
    assert agent.execution_identity.type == "service_account"
    assert agent.multiagent is None and agent.archived_at is None
    assert agent.system is None and agent.description is None
    assert agent.created_at == agent.updated_at


def test_full_tool_union_is_stored_and_echoed(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    created = client.beta.agents.create(
        model={"id": "claude-sonnet-4-6", "effort": "low", "speed": "fast", "inference_geo": "us"},
        name="full",
        description="does everything",
        system="Be brief.",
        tools=FULL_TOOLS,
        mcp_servers=[{"type": "url", "name": "docs", "url": "https://mcp.example.com/mcp"}],
        skills=[{"type": "anthropic", "skill_id": "pdf"}, {"type": "anthropic", "skill_id": "xlsx", "version": "3"}],
        metadata={"team": "core"},
        execution_identity={"type": "aws_role", "role_arn": "arn:aws:iam::123456789012:role/runner"},
    )
    body = raw.get(f"/v1/agents/{created.id}").json()
    assert body["model"] == {
        "id": "claude-sonnet-4-6",
        "effort": {"type": "low"},
        "speed": "fast",
        "inference_geo": "us",
    }
    toolset, mcp, custom = body["tools"]
    assert toolset["default_config"] == {"enabled": False, "permission_policy": {"type": "always_allow"}}
    by_name = {c["name"]: c for c in toolset["configs"]}
    assert [c["name"] for c in toolset["configs"]] == [
        "bash",
        "read",
        "write",
        "edit",
        "glob",
        "grep",
        "web_fetch",
        "web_search",
    ]
    assert all(c["type"] == c["name"] for c in toolset["configs"])
    assert by_name["bash"] == {
        "name": "bash",
        "type": "bash",
        "enabled": True,
        "permission_policy": {"type": "always_ask"},
    }
    assert by_name["edit"]["enabled"] is False  # inherits default_config.enabled
    assert by_name["glob"]["permission_policy"] == {"type": "auto"}
    assert by_name["web_fetch"]["url_sources"] == {
        "user_input": {"type": "all"},
        "client_tool_results": {"type": "only", "tools": [{"type": "tool_reference", "name": "lookup"}]},
        "server_tool_results": None,
    }
    assert by_name["web_fetch"]["allowed_domains"] == ["docs.example.com"]
    assert by_name["web_fetch"]["max_content_tokens"] == 5000
    assert by_name["web_search"]["blocked_domains"] == ["ads.example.com"]
    assert mcp == {
        "type": "mcp_toolset",
        "mcp_server_name": "docs",
        "configs": [{"name": "search", "enabled": True, "permission_policy": {"type": "always_allow"}}],
        "default_config": {"enabled": True, "permission_policy": {"type": "always_ask"}},
    }
    assert custom["input_schema"]["additionalProperties"] is False
    assert body["skills"] == [
        {"type": "anthropic", "skill_id": "pdf", "version": "latest"},
        {"type": "anthropic", "skill_id": "xlsx", "version": "3"},
    ]
    assert body["execution_identity"] == {"type": "aws_role", "role_arn": "arn:aws:iam::123456789012:role/runner"}
    assert body["metadata"] == {"team": "core"}
    # The SDK parses the same object in strict mode, typed.
    retrieved = client.beta.agents.retrieve(created.id)
    assert retrieved == created


def test_update_creates_a_version_only_on_change(client: anthropic.Anthropic, agent: Any) -> None:
    same = client.beta.agents.update(agent.id, version=1, name=agent.name)
    assert same.version == 1 and same.updated_at == agent.updated_at
    changed = client.beta.agents.update(agent.id, version=1, system="You help.", metadata={"a": "1"})
    assert changed.version == 2 and changed.system == "You help." and changed.metadata == {"a": "1"}
    assert changed.created_at == agent.created_at and changed.updated_at > agent.updated_at
    assert client.beta.agents.retrieve(agent.id, version=1).system is None
    assert client.beta.agents.retrieve(agent.id).version == 2
    versions = list(client.beta.agents.versions.list(agent.id))
    assert [v.version for v in versions] == [2, 1]


def test_version_mismatch_is_a_409_that_is_not_retried(client: anthropic.Anthropic, agent: Any) -> None:
    client.beta.agents.update(agent.id, name="renamed")
    with pytest.raises(anthropic.ConflictError) as caught:
        client.beta.agents.update(agent.id, version=1, name="renamed")  # same payload, stale version
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert "version" in caught.value.message
    assert client.beta.agents.retrieve(agent.id).version == 2


def test_update_absent_keeps_null_clears(client: anthropic.Anthropic) -> None:
    agent = client.beta.agents.create(
        model={"id": "claude-opus-4-7", "effort": "max", "inference_geo": "us"},
        name="a",
        system="s",
        description="d",
        tools=[{"type": "agent_toolset_20260401"}],
        metadata={"keep": "1", "drop": "2"},
    )
    updated = client.beta.agents.update(agent.id, system=None, metadata={"drop": None, "new": "3"})
    assert updated.system is None and updated.description == "d"
    assert updated.metadata == {"keep": "1", "new": "3"}
    assert len(updated.tools) == 1
    cleared = client.beta.agents.update(agent.id, tools=None, description="")
    assert cleared.tools == [] and cleared.description is None
    # Same model id without effort keeps effort; inference_geo omitted is cleared.
    same_model = client.beta.agents.update(agent.id, model={"id": "claude-opus-4-7"})
    assert same_model.model.effort is not None and same_model.model.effort.type == "max"
    assert same_model.model.inference_geo is None
    other_model = client.beta.agents.update(agent.id, model="claude-haiku-4-5")
    assert other_model.model.effort is not None and other_model.model.effort.type == "high"


@pytest.mark.parametrize("field", ["name", "model"])
def test_name_and_model_cannot_be_cleared(raw: httpx2.Client, agent: Any, field: str) -> None:
    assert_error(raw.post(f"/v1/agents/{agent.id}", json={field: None}), 400, "invalid_request_error", field)


def test_archive_is_permanent_and_blocks_updates(client: anthropic.Anthropic, agent: Any) -> None:
    archived = client.beta.agents.archive(agent.id)
    assert archived.archived_at is not None
    again = client.beta.agents.archive(agent.id)
    assert again.archived_at == archived.archived_at
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.agents.update(agent.id, name="x")
    assert [a.id for a in client.beta.agents.list()] == []
    assert [a.id for a in client.beta.agents.list(include_archived=True)] == [agent.id]


def test_list_pages_to_the_last_page(client: anthropic.Anthropic) -> None:
    ids = [client.beta.agents.create(**AGENT).id for _ in range(5)]
    first = client.beta.agents.list(limit=2)
    assert [a.id for a in first.data] == ids[::-1][:2] and first.next_page is not None
    seen = [a.id for a in client.beta.agents.list(limit=2)]  # auto-pagination follows next_page
    assert seen == ids[::-1]
    pages = list(client.beta.agents.list(limit=5).iter_pages())
    assert len(pages) == 1 and pages[0].next_page is None


def test_list_created_at_filters(client: anthropic.Anthropic) -> None:
    early = client.beta.agents.create(**AGENT)
    late = client.beta.agents.create(**AGENT)
    assert [a.id for a in client.beta.agents.list(created_at_gte=late.created_at)] == [late.id]
    assert [a.id for a in client.beta.agents.list(created_at_lte=early.created_at)] == [early.id]
    future = datetime.now(UTC) + timedelta(days=1)
    assert list(client.beta.agents.list(created_at_gte=future)) == []


def test_retrieve_unknown_version_is_404(client: anthropic.Anthropic, agent: Any) -> None:
    with pytest.raises(anthropic.NotFoundError, match="version 7"):
        client.beta.agents.retrieve(agent.id, version=7)


async def test_async_client_round_trip(aclient: anthropic.AsyncAnthropic) -> None:
    agent = await aclient.beta.agents.create(
        model="claude-opus-4-7",
        name="async",
        tools=FULL_TOOLS,
        mcp_servers=[{"type": "url", "name": "docs", "url": "https://mcp.example.com/mcp"}],
    )
    updated = await aclient.beta.agents.update(agent.id, version=1, name="async2")
    assert updated.version == 2
    listed = [a.id async for a in aclient.beta.agents.list()]
    assert listed == [agent.id]
    versions = [v.version async for v in aclient.beta.agents.versions.list(agent.id)]
    assert versions == [2, 1]


INVALID_AGENTS: list[tuple[dict[str, Any], str]] = [
    ({"name": "x"}, "model"),
    ({"model": "m"}, "name"),
    ({**AGENT, "name": ""}, "name"),
    ({**AGENT, "colour": "blue"}, "colour: unknown field"),
    ({**AGENT, "tools": [{"type": "toolbox"}]}, "tools[0]"),
    ({**AGENT, "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "telnet"}]}]}, "tools[0].configs[0]"),
    (
        {**AGENT, "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "bash"}, {"name": "bash"}]}]},
        "tools[0].configs[1].name",
    ),
    (
        {
            **AGENT,
            "tools": [
                {
                    "type": "agent_toolset_20260401",
                    "configs": [{"name": "web_fetch", "allowed_domains": ["a.com"], "blocked_domains": ["b.com"]}],
                }
            ],
        },
        "cannot be combined",
    ),
    (
        {
            **AGENT,
            "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "web_fetch", "allowed_domains": []}]}],
        },
        "allowed_domains",
    ),
    (
        {
            **AGENT,
            "tools": [
                {
                    "type": "agent_toolset_20260401",
                    "configs": [{"name": "bash", "permission_policy": {"type": "sometimes"}}],
                }
            ],
        },
        "permission_policy",
    ),
    ({**AGENT, "tools": [{"type": "mcp_toolset", "mcp_server_name": "nope"}]}, "tools[0].mcp_server_name"),
    ({**AGENT, "mcp_servers": [{"type": "url", "name": "docs", "url": "https://x.example.com"}]}, "mcp_servers[0]"),
    (
        {
            **AGENT,
            "mcp_servers": [{"type": "url", "name": "d", "url": "https://x.example.com"}] * 2,
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "d"}],
        },
        "mcp_servers[1].name",
    ),
    (
        {
            **AGENT,
            "tools": [{"type": "custom", "name": "bash", "description": "d", "input_schema": {"type": "object"}}],
        },
        "tools[0].name",
    ),
    (
        {
            **AGENT,
            "tools": [{"type": "custom", "name": "has space", "description": "d", "input_schema": {"type": "object"}}],
        },
        "tools[0]",
    ),
    (
        {
            **AGENT,
            "tools": [
                {
                    "type": "custom",
                    "name": "t",
                    "description": "d",
                    "input_schema": {"type": "object", "properties": {"a": {"$ref": "#/x"}}},
                }
            ],
        },
        "$ref",
    ),
    ({**AGENT, "skills": [{"type": "anthropic", "skill_id": "pdf"}]}, "read tool"),
    ({**AGENT, "skills": [{"type": "custom", "skill_id": "skill_1"}]}, "read tool"),
    (
        {
            **AGENT,
            "tools": [{"type": "agent_toolset_20260401"}],
            "skills": [{"type": "anthropic", "skill_id": "pdf"}] * 2,
        },
        "skills[1].skill_id",
    ),
    ({**AGENT, "multiagent": {"type": "multiagent_20261001"}}, "multiagent"),
    (
        {
            **AGENT,
            "tools": [
                {
                    "type": "agent_toolset_20260401",
                    "configs": [{"name": "web_search", "user_location": {"type": "approximate", "country": "DE"}}],
                }
            ],
        },
        "tools[0].configs[0].user_location",
    ),
    ({**AGENT, "model": {"id": "m", "effort": "extreme"}}, "model"),
    ({**AGENT, "execution_identity": {"type": "aws_role"}}, "execution_identity"),
    ({**AGENT, "metadata": {"k": 1}}, "metadata"),
]


@pytest.mark.parametrize(("body", "mentions"), INVALID_AGENTS)
def test_invalid_agent_is_refused_and_changes_nothing(
    client: anthropic.Anthropic, raw: httpx2.Client, body: dict[str, Any], mentions: str
) -> None:
    assert_error(raw.post("/v1/agents", json=body), 400, "invalid_request_error", mentions)
    assert list(client.beta.agents.list(include_archived=True)) == []


def test_metadata_limits_use_invalid_metadata(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.agents.create(**AGENT, metadata={f"k{i}": "v" for i in range(17)})
    assert caught.value.error_code == "invalid_metadata"
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.agents.create(**AGENT, metadata={"k": "v" * 513})
    assert caught.value.error_code == "invalid_metadata"
    agent = client.beta.agents.create(**AGENT, metadata={f"k{i}": "v" for i in range(16)})
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.agents.update(agent.id, metadata={"k16": "v"})
    assert caught.value.error_code == "invalid_metadata"
    assert client.beta.agents.retrieve(agent.id).version == 1
