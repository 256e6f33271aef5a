"""Authentication and workspace isolation (issue #2 point 3)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, LiveServer, assert_error, run_async, sdk


def test_missing_or_wrong_key_is_401(server: LiveServer) -> None:
    with httpx2.Client(base_url=server.base_url) as plain:
        assert_error(plain.get("/v1/agents"), 401, "authentication_error", "missing API key")
        assert_error(plain.get("/v1/agents", headers={"x-api-key": "sk-ah-wrong"}), 401, "authentication_error")
        assert_error(
            plain.get("/v1/agents", headers={"authorization": "Bearer sk-ah-wrong"}), 401, "authentication_error"
        )
        assert_error(plain.get("/v1/agents", headers={"authorization": "Basic abc"}), 401, "authentication_error")
    with pytest.raises(anthropic.AuthenticationError):
        sdk(server, "sk-ah-wrong").beta.agents.list()


def test_both_header_styles_work_without_beta_or_version_headers(server: LiveServer, key: str) -> None:
    with httpx2.Client(base_url=server.base_url) as plain:
        by_header = plain.post("/v1/agents", json=AGENT, headers={"x-api-key": key})
        assert by_header.status_code == 200, by_header.text
        by_bearer = plain.get("/v1/agents", headers={"authorization": f"Bearer {key}"})
        assert [a["id"] for a in by_bearer.json()["data"]] == [by_header.json()["id"]]
        assert by_bearer.headers["request-id"].startswith("req_")


def test_static_key_from_settings_reaches_the_default_workspace(server: LiveServer) -> None:
    client = sdk(server, "sk-ah-static-test-key")
    agent = client.beta.agents.create(**AGENT)
    assert client.beta.agents.retrieve(agent.id).id == agent.id


def test_revoked_key_is_refused(server: LiveServer) -> None:
    from agenthost.settings import Settings
    from agenthost.store.sql import Store

    key = server.new_key()
    client = sdk(server, key)
    client.beta.agents.list()

    async def revoke() -> None:
        store = Store(Settings(database_url=server.database_url).resolved_database_url())
        try:
            for info in await store.keys.list():
                if key.endswith(info.hint) and info.revoked_at is None:
                    await store.keys.revoke(info.id)
        finally:
            await store.close()

    run_async(revoke())
    with pytest.raises(anthropic.AuthenticationError):
        client.beta.agents.list()


def test_another_workspace_sees_404_exactly_as_for_unknown_ids(
    client: anthropic.Anthropic, other_client: anthropic.Anthropic, agent: Any, environment: Any
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    calls = [
        lambda c: c.beta.agents.retrieve(agent.id),
        lambda c: c.beta.agents.update(agent.id, name="stolen"),
        lambda c: c.beta.agents.archive(agent.id),
        lambda c: c.beta.agents.versions.list(agent.id),
        lambda c: c.beta.environments.retrieve(environment.id),
        lambda c: c.beta.environments.update(environment.id, name="stolen"),
        lambda c: c.beta.environments.archive(environment.id),
        lambda c: c.beta.environments.delete(environment.id),
        lambda c: c.beta.sessions.retrieve(session.id),
        lambda c: c.beta.sessions.update(session.id, title="stolen"),
        lambda c: c.beta.sessions.archive(session.id),
        lambda c: c.beta.sessions.delete(session.id),
        lambda c: c.beta.sessions.events.list(session.id),
    ]
    for call in calls:
        with pytest.raises(anthropic.NotFoundError):
            call(other_client)
    own_agent = other_client.beta.agents.create(**AGENT)
    with pytest.raises(anthropic.NotFoundError) as caught:
        other_client.beta.sessions.create(agent=own_agent.id, environment_id=environment.id)
    assert caught.value.error_code == "environment_not_found"
    other_env = other_client.beta.environments.create(name="theirs")
    with pytest.raises(anthropic.NotFoundError, match="agent"):
        other_client.beta.sessions.create(agent=agent.id, environment_id=other_env.id)
    assert [a.id for a in other_client.beta.agents.list()] == [own_agent.id]
    assert list(other_client.beta.sessions.list()) == []
    # Nothing changed for the owner.
    assert client.beta.agents.retrieve(agent.id).version == 1
    assert client.beta.sessions.retrieve(session.id).title is None


def test_workspace_header_must_match_the_key(server: LiveServer) -> None:
    key = server.new_key("team-header")
    with httpx2.Client(base_url=server.base_url, headers={"x-api-key": key}) as raw:
        wrong = raw.get("/v1/agents", headers={"anthropic-workspace-id": "wrkspc_other"})
        assert_error(wrong, 403, "permission_error", "anthropic-workspace-id")
        assert raw.get("/v1/agents", headers={"anthropic-workspace-id": "team-header"}).status_code == 200


def test_no_key_is_refused_before_the_body_is_read(server: LiveServer) -> None:
    with httpx2.Client(base_url=server.base_url) as plain:
        response = plain.post("/v1/agents", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 401, "authentication_error")


def test_health_needs_no_key(server: LiveServer) -> None:
    with httpx2.Client(base_url=server.base_url) as plain:
        response = plain.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
