"""Bad input always gets a 4xx in the Anthropic envelope and changes nothing."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, assert_error


def test_malformed_json(raw: httpx2.Client, client: anthropic.Anthropic) -> None:
    response = raw.post("/v1/agents", content=b'{"name": ', headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request_error", "malformed JSON")
    assert list(client.beta.agents.list()) == []


@pytest.mark.parametrize("payload", [b"[]", b"null", b'"agent"', b"17"])
def test_body_that_is_not_an_object(raw: httpx2.Client, payload: bytes) -> None:
    response = raw.post("/v1/agents", content=payload, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request_error", "body")


def test_wrong_content_type(raw: httpx2.Client, client: anthropic.Anthropic) -> None:
    response = raw.post("/v1/agents", content=b"model=x&name=y", headers={"content-type": "text/plain"})
    assert_error(response, 400, "invalid_request_error")
    assert list(client.beta.agents.list()) == []


def test_oversized_body_is_413(raw: httpx2.Client, client: anthropic.Anthropic) -> None:
    huge = {"model": "m", "name": "n", "system": "x" * (33 * 1024 * 1024)}
    response = raw.post("/v1/agents", json=huge)
    assert_error(response, 413, "request_too_large", "limit")
    assert list(client.beta.agents.list()) == []


def test_unknown_route_and_method(raw: httpx2.Client) -> None:
    assert_error(raw.get("/v1/nothing-here"), 404, "not_found_error")
    refused = raw.put("/v1/agents")
    assert_error(refused, 405, "invalid_request_error")
    assert refused.headers["allow"] == "GET, POST"  # both routes of the path, as RFC 9110 asks
    assert raw.request("TRACE", "/health").headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/v1/agents", {"limit": "0"}),
        ("GET", "/v1/agents", {"limit": "101"}),
        ("GET", "/v1/agents", {"limit": "many"}),
        ("GET", "/v1/agents", {"include_archived": "perhaps"}),
        ("GET", "/v1/agents", {"created_at[gte]": "yesterday"}),
        ("GET", "/v1/agents", {"page": "not-a-cursor"}),
        ("GET", "/v1/agents", {"page": "page_eyJvIjoidXAifQ"}),
        ("GET", "/v1/sessions", {"statuses[]": "sleeping"}),
        ("GET", "/v1/sessions", {"order": "sideways"}),
        ("GET", "/v1/sessions", {"agent_version": "2"}),
        ("GET", "/v1/agents/agent_x", {"version": "0"}),
    ],
)
def test_bad_query_parameters_name_the_parameter(
    raw: httpx2.Client, method: str, path: str, params: dict[str, str]
) -> None:
    response = raw.request(method, path, params=params)
    error = assert_error(response, 400, "invalid_request_error")
    name = next(iter(params)).split("[")[0]
    assert name in error["message"], error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": ["m"], "name": "n"},
        {"model": "m", "name": "n", "tools": "bash"},
        {"model": "m", "name": "n", "tools": [None]},
        {"model": "m", "name": "n", "tools": [{"type": "custom"}]},
        {
            "model": "m",
            "name": "n",
            "mcp_servers": [{"type": "url", "name": "s", "url": "ftp://x"}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "s"}],
        },
        {"model": {"id": ""}, "name": "n"},
        {"model": "m", "name": "n", "metadata": None},
        {"model": "m", "name": "n" * 300},
    ],
)
def test_agent_garbage_never_5xx(raw: httpx2.Client, client: anthropic.Anthropic, body: dict[str, Any]) -> None:
    response = raw.post("/v1/agents", json=body)
    assert_error(response, 400, "invalid_request_error")
    assert list(client.beta.agents.list()) == []


def test_archive_with_empty_json_body(raw: httpx2.Client) -> None:
    agent = raw.post("/v1/agents", json=AGENT).json()
    response = raw.post(f"/v1/agents/{agent['id']}/archive", content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["archived_at"] is not None


@pytest.mark.parametrize(
    ("call", "mentions"),
    [
        (lambda c, s: c.beta.tunnels.list(), "self-hosted"),
        (lambda c, s: c.beta.tunnels.retrieve("tun_x"), "self-hosted"),
        (lambda c, s: c.beta.user_profiles.list(), "self-hosted"),
        (lambda c, s: c.beta.user_profiles.create(), "self-hosted"),
        (lambda c, s: c.beta.sessions.threads.list(s), "session threads (multi-agent sessions): not implemented yet"),
        (
            lambda c, s: c.beta.sessions.threads.retrieve("sthr_x", session_id=s),
            "session threads (multi-agent sessions): not implemented yet",
        ),
        (lambda c, s: c.beta.deployments.list(), "deployments (scheduled sessions): not implemented yet"),
        (lambda c, s: c.beta.deployment_runs.list(), "deployment runs: not implemented yet"),
        (lambda c, s: c.beta.dreams.list(), "dreams: not implemented yet"),
    ],
    ids=[
        "tunnels",
        "tunnel",
        "user-profiles",
        "user-profile-create",
        "threads",
        "thread",
        "deployments",
        "runs",
        "dreams",
    ],
)
def test_sdk_paths_not_served_say_why(
    client: anthropic.Anthropic, agent: Any, environment: Any, call: Any, mentions: str
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with pytest.raises(anthropic.BadRequestError) as refused:
        call(client, session.id)
    assert mentions in refused.value.message
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
