"""Environments through the official SDK in strict mode."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, assert_error


def test_create_defaults_to_unrestricted_cloud(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="plain")
    assert env.type == "environment" and env.id.startswith("env_")
    assert env.config.type == "cloud"
    assert env.config.networking.type == "unrestricted"
    packages = env.config.packages
    assert (packages.apt, packages.cargo, packages.gem, packages.go, packages.npm, packages.pip) == ([],) * 6
    assert env.metadata == {} and env.description is None and env.archived_at is None
    assert env.scope == "organization"
    assert client.beta.environments.retrieve(env.id) == env


def test_limited_networking_and_packages(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(
        name="limited",
        description="locked down",
        config={
            "type": "cloud",
            "networking": {
                "type": "limited",
                "allowed_hosts": ["api.example.com", "*.pypi.org"],
                "allow_package_managers": True,
            },
            "packages": {"pip": ["requests==2.32.0"], "npm": ["left-pad"]},
        },
        metadata={"tier": "gold"},
    )
    networking = env.config.networking
    assert networking.type == "limited"
    assert networking.allowed_hosts == ["api.example.com", "*.pypi.org"]
    assert networking.allow_package_managers is True and networking.allow_mcp_servers is False
    assert env.config.packages.pip == ["requests==2.32.0"] and env.config.packages.apt == []


def test_packages_under_limited_need_package_managers(raw: httpx2.Client, client: anthropic.Anthropic) -> None:
    body = {"name": "x", "config": {"type": "cloud", "networking": {"type": "limited"}, "packages": {"pip": ["a"]}}}
    assert_error(raw.post("/v1/environments", json=body), 400, "invalid_request_error", "allow_package_managers")
    assert list(client.beta.environments.list()) == []


def test_self_hosted_config(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    assert env.config.type == "self_hosted"


def test_update_merges_config_and_patches_metadata(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(
        name="e",
        description="d",
        config={
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["a.example.com"], "allow_package_managers": True},
            "packages": {"pip": ["x"]},
        },
        metadata={"a": "1", "b": "2", "c": "3"},
    )
    updated = client.beta.environments.update(
        env.id,
        config={"type": "cloud", "networking": {"type": "limited", "allow_mcp_servers": True}},
        metadata={"a": None, "b": "", "d": "4"},
    )
    networking = updated.config.networking
    assert networking.type == "limited"
    assert networking.allowed_hosts == ["a.example.com"]  # omitted: kept
    assert networking.allow_mcp_servers is True and networking.allow_package_managers is True
    assert updated.config.packages.pip == ["x"]  # packages omitted: kept
    assert updated.metadata == {"c": "3", "d": "4"}  # null and "" delete
    assert updated.description == "d" and updated.updated_at > env.updated_at
    cleared = client.beta.environments.update(env.id, description=None, name="renamed")
    assert cleared.description is None and cleared.name == "renamed"


def test_changing_config_type_is_refused(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="cloudy")
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.environments.update(env.id, config={"type": "self_hosted"})
    assert caught.value.error_code == "invalid_config_type_change"
    assert client.beta.environments.retrieve(env.id).config.type == "cloud"


def test_archived_environment_cannot_be_updated_or_used(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="old")
    archived = client.beta.environments.archive(env.id)
    assert archived.archived_at is not None
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.environments.update(env.id, name="new")
    assert caught.value.error_code == "environment_archived"
    agent = client.beta.agents.create(**AGENT)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert caught.value.error_code == "environment_archived"
    assert [e.id for e in client.beta.environments.list()] == []
    assert [e.id for e in client.beta.environments.list(include_archived=True)] == [env.id]


def test_names_are_unique_per_workspace(client: anthropic.Anthropic, other_client: anthropic.Anthropic) -> None:
    client.beta.environments.create(name="shared")
    with pytest.raises(anthropic.ConflictError) as caught:
        client.beta.environments.create(name="shared")
    assert caught.value.response.headers["x-should-retry"] == "false"
    other_client.beta.environments.create(name="shared")  # another workspace may use the name
    second = client.beta.environments.create(name="second")
    with pytest.raises(anthropic.ConflictError):
        client.beta.environments.update(second.id, name="shared")


def test_an_archived_environments_name_is_free_again(client: anthropic.Anthropic) -> None:
    """A program that archives its fixed-name environment at the end can run again."""
    agent = client.beta.agents.create(**AGENT)
    first = client.beta.environments.create(name="cookbook")
    session = client.beta.sessions.create(agent=agent.id, environment_id=first.id)
    client.beta.sessions.archive(session.id)
    client.beta.environments.archive(first.id)
    second = client.beta.environments.create(name="cookbook")
    assert second.id != first.id and second.name == "cookbook"
    with pytest.raises(anthropic.ConflictError):  # still unique among the active ones
        client.beta.environments.create(name="cookbook")
    client.beta.environments.archive(second.id)
    third = client.beta.environments.create(name="cookbook")
    listed = [(e.id, e.name, e.archived_at is None) for e in client.beta.environments.list(include_archived=True)]
    assert listed == [(third.id, "cookbook", True), (second.id, "cookbook", False), (first.id, "cookbook", False)]
    assert client.beta.sessions.retrieve(session.id).environment_id == first.id


def test_delete(client: anthropic.Anthropic) -> None:
    env = client.beta.environments.create(name="gone")
    deleted = client.beta.environments.delete(env.id)
    assert deleted.id == env.id and deleted.type == "environment_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.retrieve(env.id)


def test_delete_refused_while_sessions_use_it(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with pytest.raises(anthropic.ConflictError, match="used by 1 session"):
        client.beta.environments.delete(environment.id)
    client.beta.sessions.delete(session.id)
    client.beta.environments.delete(environment.id)


def test_list_pagination(client: anthropic.Anthropic) -> None:
    ids = [client.beta.environments.create(name=f"e{i}").id for i in range(3)]
    page = client.beta.environments.list(limit=2)
    assert [e.id for e in page.data] == ids[::-1][:2]
    assert page.next_page is not None
    assert [e.id for e in client.beta.environments.list(limit=2)] == ids[::-1]


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({}, "name"),
        ({"name": "x", "config": {"type": "kubernetes"}}, "config"),
        ({"name": "x", "config": {"type": "cloud", "networking": {"type": "open"}}}, "config.networking"),
        (
            {
                "name": "x",
                "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["https://a.com/x"]}},
            },
            "allowed_hosts[0]",
        ),
        ({"name": "x", "config": {"type": "cloud", "packages": {"brew": ["x"]}}}, "brew"),
        ({"name": "x", "scope": "account"}, "scope"),
        ({"name": "x", "metadata": {"k" * 65: "v"}}, "metadata"),
    ],
)
def test_invalid_environment_is_refused(
    client: anthropic.Anthropic, raw: httpx2.Client, body: dict[str, Any], mentions: str
) -> None:
    assert_error(raw.post("/v1/environments", json=body), 400, "invalid_request_error", mentions)
    assert list(client.beta.environments.list(include_archived=True)) == []
