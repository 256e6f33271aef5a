"""Vaults and credentials through the official SDK in strict mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx2
import pytest
import sqlalchemy as sa

from agenthost.settings import Settings
from agenthost.store.sql import Store
from tests.conftest import AGENT, LiveServer, assert_error, run_async

BEARER = {"type": "static_bearer", "mcp_server_url": "https://MCP.example.com:443/sse/", "token": "tok-bearer-1"}
ENV_VAR = {
    "type": "environment_variable",
    "secret_name": "STRIPE_KEY",
    "secret_value": "sk-live-secret-2",
    "networking": {"type": "limited", "allowed_hosts": ["api.stripe.com", "*.stripe.net"]},
}
OAUTH = {
    "type": "mcp_oauth",
    "mcp_server_url": "https://oauth.example.com/mcp",
    "access_token": "at-secret-3",
    "refresh": {
        "client_id": "client-1",
        "refresh_token": "rt-secret-4",
        "token_endpoint": "https://auth.example.com/token",
        "token_endpoint_auth": {"type": "client_secret_post", "client_secret": "cs-secret-5"},
        "scope": "read",
    },
}
SECRETS = ("tok-bearer-1", "sk-live-secret-2", "at-secret-3", "rt-secret-4", "cs-secret-5")


def _stored_text(server: LiveServer) -> str:
    """Every credential row as text, as the database holds it."""

    async def read() -> str:
        store = Store(Settings(database_url=server.database_url).resolved_database_url())
        try:
            rows = await store.db.run_read(lambda c: c.execute(sa.text("SELECT * FROM vault_credentials")).all())
            return repr(rows)
        finally:
            await store.close()

    return run_async(read())


def test_vault_crud(client: anthropic.Anthropic, other_client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="Alice", metadata={"user": "alice"})
    assert vault.type == "vault" and vault.id.startswith("vlt_") and vault.archived_at is None
    assert client.beta.vaults.retrieve(vault.id) == vault
    updated = client.beta.vaults.update(vault.id, display_name="Alice B", metadata={"user": None, "team": "x"})
    assert updated.display_name == "Alice B" and updated.metadata == {"team": "x"}
    second = client.beta.vaults.create(display_name="Bob")
    assert [v.id for v in client.beta.vaults.list(limit=1)] == [second.id, vault.id]
    archived = client.beta.vaults.archive(second.id)
    assert archived.archived_at is not None
    assert client.beta.vaults.archive(second.id) == archived  # archiving twice changes nothing
    assert [v.id for v in client.beta.vaults.list()] == [vault.id]
    assert [v.id for v in client.beta.vaults.list(include_archived=True)] == [second.id, vault.id]
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.vaults.update(second.id, display_name="again")
    with pytest.raises(anthropic.NotFoundError):
        other_client.beta.vaults.retrieve(vault.id)
    deleted = client.beta.vaults.delete(vault.id)
    assert deleted.id == vault.id and deleted.type == "vault_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.vaults.retrieve(vault.id)


def test_credentials_never_return_or_store_secrets_in_clear(client: anthropic.Anthropic, server: LiveServer) -> None:
    vault = client.beta.vaults.create(display_name="Alice")
    credentials = client.beta.vaults.credentials
    bearer = credentials.create(vault.id, auth=BEARER, display_name="mcp")
    env = credentials.create(vault.id, auth=ENV_VAR)
    oauth = credentials.create(vault.id, auth=OAUTH, metadata={"k": "v"})
    assert bearer.type == "vault_credential" and bearer.id.startswith("vcrd_") and bearer.vault_id == vault.id
    assert bearer.auth.type == "static_bearer" and bearer.auth.mcp_server_url == BEARER["mcp_server_url"]
    assert env.auth.type == "environment_variable"
    assert env.auth.injection_location.body is True and env.auth.injection_location.header is True
    assert env.auth.networking.type == "limited"
    assert env.auth.networking.allowed_hosts == ["api.stripe.com", "*.stripe.net"]
    assert oauth.auth.type == "mcp_oauth" and oauth.auth.refresh is not None
    assert oauth.auth.refresh.token_endpoint_auth.type == "client_secret_post" and oauth.auth.refresh.scope == "read"
    assert [c.id for c in credentials.list(vault.id, limit=2)] == [oauth.id, env.id, bearer.id]
    assert credentials.retrieve(env.id, vault_id=vault.id) == env

    text = client.beta.vaults.credentials.with_raw_response.list(vault.id).http_response.text
    stored = _stored_text(server)
    for secret in SECRETS:
        assert secret not in text and secret not in stored


def limited(hosts: list[str]) -> dict[str, Any]:
    return {"type": "limited", "allowed_hosts": hosts}


def test_credential_rules(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    vault = client.beta.vaults.create(display_name="Alice")
    credentials = client.beta.vaults.credentials
    first = credentials.create(vault.id, auth=BEARER)
    path = f"/v1/vaults/{vault.id}/credentials"
    # The same server URL, written differently, is taken while the first is active (409).
    same = {**BEARER, "mcp_server_url": "https://mcp.example.com/sse"}
    assert_error(raw.post(path, json={"auth": same}), 409, "invalid_request_error", "auth.mcp_server_url")
    credentials.create(vault.id, auth=ENV_VAR)
    assert_error(raw.post(path, json={"auth": ENV_VAR}), 409, "invalid_request_error", "auth.secret_name")
    bad = [
        ({**ENV_VAR, "secret_name": "1BAD"}, "auth.secret_name"),
        ({**ENV_VAR, "secret_name": "PATH"}, "auth.secret_name"),
        ({**ENV_VAR, "secret_name": "https_proxy"}, "auth.secret_name"),
        ({**ENV_VAR, "secret_name": "OTHER", "injection_location": {"body": False}}, "injection_location"),
        ({**ENV_VAR, "secret_name": "OTHER", "injection_location": None}, "injection_location"),
        ({**ENV_VAR, "secret_name": "OTHER", "networking": limited(["a.com/x"])}, "allowed_hosts[0]"),
        ({**ENV_VAR, "secret_name": "OTHER", "networking": limited([f"h{i}.com" for i in range(17)])}, "allowed_hosts"),
        ({**BEARER, "mcp_server_url": "ftp://x"}, "auth.mcp_server_url"),
        ({**OAUTH, "expires_at": "2001-01-01T00:00:00Z"}, "auth.expires_at"),
        ({"type": "static_bearer", "mcp_server_url": "https://z.example.com"}, "auth.token"),
    ]
    for auth, mention in bad:
        assert_error(raw.post(path, json={"auth": auth}), 400, "invalid_request_error", mention)
    partial = credentials.create(
        vault.id, auth={**ENV_VAR, "secret_name": "PARTIAL", "injection_location": {"header": True}}
    )
    assert partial.auth.injection_location.body is False and partial.auth.injection_location.header is True
    assert len(list(credentials.list(vault.id))) == 3

    # Keys are immutable and the type cannot change; archiving frees the URL.
    assert_error(
        raw.post(f"{path}/{first.id}", json={"auth": {"type": "static_bearer", "mcp_server_url": "https://x.com"}}),
        400,
        "invalid_request_error",
        "mcp_server_url",
    )
    assert_error(
        raw.post(f"{path}/{first.id}", json={"auth": {"type": "mcp_oauth", "access_token": "x"}}),
        400,
        "invalid_request_error",
        "type cannot change",
    )
    archived = credentials.archive(first.id, vault_id=vault.id)
    assert archived.archived_at is not None
    again = credentials.create(vault.id, auth=same)
    assert [c.id for c in credentials.list(vault.id, include_archived=True)][0] == again.id
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        credentials.update(first.id, vault_id=vault.id, display_name="x")
    deleted = credentials.delete(first.id, vault_id=vault.id)
    assert deleted.type == "vault_credential_deleted"
    with pytest.raises(anthropic.NotFoundError):
        credentials.retrieve(first.id, vault_id=vault.id)


def test_at_most_twenty_active_credentials(client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="many")
    for index in range(20):
        client.beta.vaults.credentials.create(
            vault.id, auth={**BEARER, "mcp_server_url": f"https://m{index}.example.com"}
        )
    with pytest.raises(anthropic.BadRequestError, match="20 active"):
        client.beta.vaults.credentials.create(vault.id, auth={**BEARER, "mcp_server_url": "https://m99.example.com"})


def test_credential_updates_merge(client: anthropic.Anthropic) -> None:
    vault = client.beta.vaults.create(display_name="Alice")
    credentials = client.beta.vaults.credentials
    env = credentials.create(vault.id, auth=ENV_VAR, display_name="stripe", metadata={"a": "1"})
    later = datetime.now(UTC) + timedelta(hours=1)
    updated = credentials.update(
        env.id,
        vault_id=vault.id,
        auth={"type": "environment_variable", "injection_location": {"body": False}, "secret_value": "new"},
        metadata={"a": None, "b": "2"},
        display_name=None,
    )
    assert updated.auth.injection_location.body is False and updated.auth.injection_location.header is True
    assert updated.metadata == {"b": "2"} and updated.display_name is None
    oauth = credentials.create(vault.id, auth=OAUTH)
    changed = credentials.update(
        oauth.id,
        vault_id=vault.id,
        auth={"type": "mcp_oauth", "access_token": "at-new", "expires_at": later, "refresh": {"scope": ""}},
    )
    assert changed.auth.expires_at is not None and abs(changed.auth.expires_at - later) < timedelta(seconds=1)
    assert changed.auth.refresh is not None and changed.auth.refresh.scope is None
    with pytest.raises(anthropic.BadRequestError, match="injection_location"):
        credentials.update(
            env.id, vault_id=vault.id, auth={"type": "environment_variable", "injection_location": {"header": False}}
        )


def test_vault_archive_cascades_and_sessions_check_their_vaults(
    client: anthropic.Anthropic, raw: httpx2.Client, other_client: anthropic.Anthropic
) -> None:
    vault = client.beta.vaults.create(display_name="Alice")
    credential = client.beta.vaults.credentials.create(vault.id, auth=BEARER)
    agent = client.beta.agents.create(**AGENT)
    env = client.beta.environments.create(name="vault-env")
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=[vault.id])
    assert session.vault_ids == [vault.id]
    foreign = other_client.beta.vaults.create(display_name="Eve")
    body = {"agent": agent.id, "environment_id": env.id}
    response = raw.post("/v1/sessions", json={**body, "vault_ids": [foreign.id]})
    assert_error(response, 404, "not_found_error", "vault_ids[0]")
    client.beta.vaults.archive(vault.id)
    assert client.beta.vaults.credentials.retrieve(credential.id, vault_id=vault.id).archived_at is not None
    response = raw.post("/v1/sessions", json={**body, "vault_ids": [vault.id]})
    assert_error(response, 400, "invalid_request_error", "archived")
    assert [s.id for s in client.beta.sessions.list()] == [session.id]
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.vaults.credentials.create(vault.id, auth={**BEARER, "mcp_server_url": "https://n.example.com"})


def test_bad_bodies_are_400(raw: httpx2.Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "display_name"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "x" * 256}, "display_name"),
        ({"display_name": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"display_name": "x", "extra": 1}, "extra"),
    ]
    for body, mention in cases:
        assert_error(raw.post("/v1/vaults", json=body), 400, "invalid_request_error", mention)
