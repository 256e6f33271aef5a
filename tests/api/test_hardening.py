"""Inputs found by review that once produced 5xx or lost writes: each must be a clean 4xx, or correct."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx2
import pytest

from agenthost.store.paging import PAGE_BYTES
from tests.conftest import AGENT, assert_error

BIG = 2**31


def test_concurrent_metadata_updates_are_not_lost(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.beta.sessions.update(session.id, metadata={f"k{i}": "v"}), range(10)))
    assert client.beta.sessions.retrieve(session.id).metadata == {f"k{i}": "v" for i in range(10)}
    assert len(list(client.beta.sessions.events.list(session.id))) == 10
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.beta.environments.update(environment.id, metadata={f"e{i}": "v"}), range(10)))
    assert client.beta.environments.retrieve(environment.id).metadata == {f"e{i}": "v" for i in range(10)}


def test_concurrent_archive_logs_termination_once(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: client.beta.sessions.archive(session.id), range(6)))
    assert len({r.archived_at for r in results}) == 1
    assert [e.type for e in client.beta.sessions.events.list(session.id)] == ["session.status_terminated"]


def test_concurrent_agent_updates_each_make_a_version(client: anthropic.Anthropic, agent: Any) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: client.beta.agents.update(agent.id, metadata={f"m{i}": "v"}), range(6)))
    assert sorted(r.version for r in results) == [2, 3, 4, 5, 6, 7]
    assert client.beta.agents.retrieve(agent.id).metadata == {f"m{i}": "v" for i in range(6)}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "mentions"),
    [
        ("GET", "/v1/agents/agent_x", {"params": {"version": str(BIG)}}, "version"),
        ("GET", "/v1/sessions", {"params": {"agent_id": "a", "agent_version": str(10**20)}}, "agent_version"),
        (
            "POST",
            "/v1/sessions",
            {"json": {"agent": {"type": "agent", "id": "a", "version": 10**20}, "environment_id": "e"}},
            "agent.version",
        ),
        ("POST", "/v1/agents/agent_x", {"json": {"version": BIG}}, "version"),
    ],
)
def test_integers_beyond_storage_are_400(
    raw: httpx2.Client, method: str, path: str, kwargs: dict[str, Any], mentions: str
) -> None:
    assert_error(raw.request(method, path, **kwargs), 400, "invalid_request_error", mentions)


def test_cursor_from_another_list_is_400(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any
) -> None:
    client.beta.agents.create(**AGENT)
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    cursor = client.beta.agents.list(limit=1).next_page
    assert cursor is not None
    for path, params in [
        (f"/v1/sessions/{session.id}/events", {"order": "desc", "page": cursor}),
        ("/v1/environments", {"page": cursor}),
        (f"/v1/agents/{agent.id}/versions", {"page": cursor}),
    ]:
        assert_error(raw.get(path, params=params), 400, "invalid_request_error", "page")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "mentions"),
    [
        ("POST", "/v1/environments", {"json": {"name": "a\u0000b"}}, "name"),
        ("GET", "/v1/agents/agent_%00x", {}, "NUL"),
        ("GET", "/v1/sessions", {"params": {"agent_id": "a\u0000"}}, "NUL"),
    ],
)
def test_nul_characters_are_400(
    raw: httpx2.Client, method: str, path: str, kwargs: dict[str, Any], mentions: str
) -> None:
    assert_error(raw.request(method, path, **kwargs), 400, "invalid_request_error", mentions)


def test_nul_in_session_title_is_400(raw: httpx2.Client, agent: Any, environment: Any) -> None:
    body = {"agent": agent.id, "environment_id": environment.id, "title": "a\u0000"}
    assert_error(raw.post("/v1/sessions", json=body), 400, "invalid_request_error", "title")


def test_deeply_nested_input_schema_is_400(raw: httpx2.Client) -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(250):
        node = {"type": "object", "properties": {"x": node}}
    tool = {"type": "custom", "name": "deep", "description": "d", "input_schema": node}
    assert_error(raw.post("/v1/agents", json={**AGENT, "tools": [tool]}), 400, "invalid_request_error", "nested")


def test_oversized_chunked_body_is_413(raw: httpx2.Client) -> None:
    def chunks() -> Any:
        yield b'{"model": "m", "name": "n", "system": "'
        for _ in range(34):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = raw.post("/v1/agents", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, "request_too_large", "limit")


def test_union_labels_do_not_leak_into_field_names(raw: httpx2.Client, environment: Any) -> None:
    error = assert_error(
        raw.post("/v1/sessions", json={"agent": "a" * 300, "environment_id": environment.id}),
        400,
        "invalid_request_error",
    )
    assert error["message"].startswith("agent:"), error["message"]
    error = assert_error(raw.post("/v1/agents", json={"model": ["m"], "name": "n"}), 400, "invalid_request_error")
    assert error["message"].startswith("model:"), error["message"]


def test_budget_null_on_a_session_without_budget_is_a_no_op(
    client: anthropic.Anthropic, agent: Any, environment: Any
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    assert client.beta.sessions.update(session.id, budget=None).budget is None


@pytest.mark.parametrize(
    ("config", "mentions"),
    [
        ({"name": "web_fetch", "allowed_domains": ["example.com/docs"]}, "allowed_domains[0]"),
        ({"name": "web_fetch", "blocked_domains": ["10.0.0.1"]}, "blocked_domains[0]"),
        ({"name": "web_fetch", "allowed_domains": ["localhost"]}, "allowed_domains[0]"),
        ({"name": "web_search", "allowed_domains": ["printer.local"]}, "allowed_domains[0]"),
    ],
)
def test_domain_lists_take_only_public_hostnames(raw: httpx2.Client, config: dict[str, Any], mentions: str) -> None:
    body = {**AGENT, "tools": [{"type": "agent_toolset_20260401", "configs": [config]}]}
    assert_error(raw.post("/v1/agents", json=body), 400, "invalid_request_error", mentions)


def test_web_search_domains_may_carry_a_path(client: anthropic.Anthropic) -> None:
    agent = client.beta.agents.create(
        **AGENT,
        tools=[
            {
                "type": "agent_toolset_20260401",
                "configs": [{"name": "web_search", "allowed_domains": ["docs.example.com/guide"]}],
            }
        ],
    )
    assert agent.tools[0].type == "agent_toolset_20260401"


def _forged(listing: str, order: str, key: Any) -> str:
    raw = json.dumps({"l": listing, "o": order, "d": "n", "k": key}).encode()
    return "page_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "listing", "order", "cursor_key"),
    [
        ("/v1/sessions/{session}/events", "events", "asc", [2**63, 0]),
        ("/v1/sessions/{session}/events", "events", "asc", [0, -(2**63) - 1]),
        ("/v1/agents/{agent}/versions", "agent_versions", "desc", 2**63),
        ("/v1/agents/{agent}/versions", "agent_versions", "desc", 10**30),
        ("/v1/sessions", "sessions", "desc", "sesn_\u0000"),
        ("/v1/environments", "environments", "desc", "env_" + "x" * 1100),
    ],
    ids=["seq-2^63", "number-below-int64", "version-2^63", "version-10^30", "nul-id", "long-id"],
)
def test_forged_cursors_are_400(
    client: anthropic.Anthropic,
    raw: httpx2.Client,
    agent: Any,
    environment: Any,
    path: str,
    listing: str,
    order: str,
    cursor_key: Any,
) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    url = path.format(session=session.id, agent=agent.id)
    params = {"page": _forged(listing, order, cursor_key)}
    if listing == "events":
        params["order"] = order
    assert_error(raw.get(url, params=params), 400, "invalid_request_error", "page")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/sessions", lambda a, e: {"agent": a, "environment_id": e, "title": "t" * 1025}, "title"),
        ("/v1/environments", lambda a, e: {"name": "n", "description": "d" * 2049}, "description"),
        ("/v1/environments/{environment}", lambda a, e: {"description": "d" * 2049}, "description"),
        (
            "/v1/agents",
            lambda a, e: {
                **AGENT,
                "tools": [
                    {"type": "custom", "name": "t", "description": "d" * 16385, "input_schema": {"type": "object"}}
                ],
            },
            "tools[0].description",
        ),
        ("/v1/sessions", lambda a, e: {"agent": a, "environment_id": e, "vault_ids": ["v" * 129]}, "vault_ids[0]"),
    ],
    ids=["title", "environment-description", "environment-update", "tool-description", "vault-id"],
)
def test_free_text_fields_are_bounded(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any, path: str, body: Any, field: str
) -> None:
    url = path.format(environment=environment.id)
    error = assert_error(raw.post(url, json=body(agent.id, environment.id)), 400, "invalid_request_error", field)
    assert "at most" in error["message"]
    assert client.beta.environments.retrieve(environment.id).description == environment.description
    assert [s.id for s in client.beta.sessions.list()] == []


def test_a_list_page_stops_at_its_byte_budget_and_the_next_page_continues(
    client: anthropic.Anthropic, raw: httpx2.Client
) -> None:
    tool = {"type": "custom", "description": "d" * 16384, "input_schema": {"type": "object"}}
    tools = [{**tool, "name": f"t{i}"} for i in range(100)]  # about 1.7 MB an agent
    made = [client.beta.agents.create(**AGENT, system="s" * 100_000, tools=tools).id for _ in range(3)]  # type: ignore[arg-type]
    first = raw.get("/v1/agents", params={"limit": 100}).json()
    assert 0 < len(first["data"]) < 3
    assert sum(len(json.dumps(agent)) for agent in first["data"]) <= PAGE_BYTES
    pages = [agent["id"] for agent in first["data"]]
    cursor = first["next_page"]
    assert cursor is not None
    while cursor is not None:
        page = raw.get("/v1/agents", params={"limit": 100, "page": cursor}).json()
        assert page["data"], "a page that continues is never empty"
        pages += [agent["id"] for agent in page["data"]]
        cursor = page["next_page"]
    assert pages == made[::-1]  # newest first, each once


def test_initial_events_are_at_most_fifty(raw: httpx2.Client, agent: Any, environment: Any) -> None:
    message = {"type": "user.message", "content": [{"type": "text", "text": "hi"}]}
    body = {"agent": agent.id, "environment_id": environment.id, "initial_events": [message] * 51}
    assert_error(raw.post("/v1/sessions", json=body), 400, "invalid_request_error", "initial_events")


def test_what_the_fuzzer_found_is_refused_and_changes_nothing(raw: httpx2.Client, environment: Any) -> None:
    # A number where the contract says boolean is not read as one.
    tools = [{"type": "agent_toolset_20260401", "default_config": {"enabled": 0}}]
    refused = raw.post("/v1/agents", json={**AGENT, "tools": tools})
    assert_error(refused, 400, "invalid_request_error", "tools[0]")
    # A metadata patch is held to the bounds of stored metadata, deletions included.
    path = f"/v1/environments/{environment.id}"
    assert_error(raw.post(path, json={"metadata": {"k" * 65: ""}}), 400, "invalid_request_error", "metadata")
    patch = {f"key{index}": None for index in range(33)}  # room to replace all 16 keys, and no more
    assert_error(raw.post(path, json={"metadata": patch}), 400, "invalid_request_error", "metadata")
    assert raw.get(path).json()["metadata"] == {}
