"""Strings the stores cannot hold (a lone UTF-16 surrogate, NUL) are a 400 naming the field, and change nothing.

Python's ``json.dumps`` writes a lone surrogate as the escape ``\\ud800``, so any client can
send one; both databases refuse it (SQLite's UTF-8 has no encoding for it, PostgreSQL refuses
NUL in text and ``jsonb``). Every case runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, assert_error

SURROGATE = "\ud800"
NUL = "\u0000"

BEARER = {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/sse", "token": "tok"}
ENV_VAR = {
    "type": "environment_variable",
    "secret_name": "API_TOKEN",
    "secret_value": "s3cret",
    "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]},
}


@pytest.fixture
def made(client: anthropic.Anthropic) -> dict[str, str]:
    """One of each resource the cases below write to."""
    agent = client.beta.agents.create(**AGENT)
    environment = client.beta.environments.create(name="text-checks")
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    vault = client.beta.vaults.create(display_name="v")
    credential = client.beta.vaults.credentials.create(vault.id, auth=BEARER)  # type: ignore[arg-type]
    file = client.beta.files.upload(file=("a.txt", b"hello", "text/plain"))
    return {
        "agent": agent.id,
        "environment": environment.id,
        "session": session.id,
        "vault": vault.id,
        "credential": credential.id,
        "file": file.id,
    }


def _everything(client: anthropic.Anthropic, made: dict[str, str]) -> Any:
    """The workspace's whole visible state, to show a refused request wrote nothing."""
    return [
        [a.model_dump() for a in client.beta.agents.list()],
        [e.model_dump() for e in client.beta.environments.list()],
        [s.model_dump(exclude={"stats"}) for s in client.beta.sessions.list()],  # stats grow with time
        [e.model_dump() for e in client.beta.sessions.events.list(made["session"])],
        [r.model_dump() for r in client.beta.sessions.resources.list(made["session"])],
        [v.model_dump() for v in client.beta.vaults.list()],
        [c.model_dump() for c in client.beta.vaults.credentials.list(made["vault"])],
        [f.model_dump() for f in client.beta.files.list()],
    ]


def _session(ids: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"agent": ids["agent"], "environment_id": ids["environment"], **fields}


def _message(text: str) -> dict[str, Any]:
    return {"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]}


# (path, body(ids, bad), the field the message names): every string field a client writes.
CASES: list[tuple[str, Any, str]] = [
    ("/v1/sessions", lambda i, x: _session(i, title=x), "title"),
    ("/v1/sessions", lambda i, x: _session(i, metadata={"k": x}), "metadata.k"),
    ("/v1/sessions", lambda i, x: _session(i, metadata={x: "v"}), "metadata: key"),
    ("/v1/sessions", lambda i, x: {"agent": x, "environment_id": i["environment"]}, "agent"),
    ("/v1/sessions", lambda i, x: {"agent": i["agent"], "environment_id": x}, "environment_id"),
    ("/v1/sessions/{session}", lambda i, x: {"title": x}, "title"),
    ("/v1/sessions/{session}", lambda i, x: {"metadata": {"k": x}}, "metadata.k"),
    ("/v1/sessions/{session}/events", lambda i, x: _message(x), "events[0].content[0].text"),
    ("/v1/sessions/{session}/resources", lambda i, x: {"type": "file", "file_id": x}, "file_id"),
    ("/v1/environments", lambda i, x: {"name": x}, "name"),
    ("/v1/environments", lambda i, x: {"name": "n", "description": x}, "description"),
    ("/v1/environments", lambda i, x: {"name": "n", "metadata": {"k": x}}, "metadata.k"),
    ("/v1/environments/{environment}", lambda i, x: {"name": x}, "name"),
    ("/v1/environments/{environment}", lambda i, x: {"description": x}, "description"),
    ("/v1/environments/{environment}", lambda i, x: {"metadata": {"k": x}}, "metadata.k"),
    ("/v1/agents", lambda i, x: {**AGENT, "metadata": {"k": x}}, "metadata.k"),
    ("/v1/agents", lambda i, x: {**AGENT, "system": x}, "system"),
    ("/v1/agents/{agent}", lambda i, x: {"version": 1, "metadata": {"k": x}}, "metadata.k"),
    ("/v1/agents/{agent}", lambda i, x: {"version": 1, "name": x}, "name"),
    ("/v1/vaults", lambda i, x: {"display_name": x}, "display_name"),
    ("/v1/vaults", lambda i, x: {"display_name": "v", "metadata": {"k": x}}, "metadata.k"),
    ("/v1/vaults/{vault}", lambda i, x: {"display_name": x}, "display_name"),
    ("/v1/vaults/{vault}", lambda i, x: {"metadata": {"k": x}}, "metadata.k"),
    ("/v1/vaults/{vault}/credentials", lambda i, x: {"auth": {**BEARER, "token": x}}, "auth.token"),
    ("/v1/vaults/{vault}/credentials", lambda i, x: {"auth": {**BEARER, "mcp_server_url": x}}, "auth.mcp_server_url"),
    ("/v1/vaults/{vault}/credentials", lambda i, x: {"auth": BEARER, "display_name": x}, "display_name"),
    ("/v1/vaults/{vault}/credentials", lambda i, x: {"auth": BEARER, "metadata": {"k": x}}, "metadata.k"),
    (
        "/v1/vaults/{vault}/credentials",
        lambda i, x: {"auth": {**ENV_VAR, "secret_value": x}},
        "auth.secret_value",
    ),
    (
        "/v1/vaults/{vault}/credentials/{credential}",
        lambda i, x: {"auth": {"type": "static_bearer", "token": x}},
        "auth.token",
    ),
    ("/v1/vaults/{vault}/credentials/{credential}", lambda i, x: {"display_name": x}, "display_name"),
    ("/v1/vaults/{vault}/credentials/{credential}", lambda i, x: {"metadata": {"k": x}}, "metadata.k"),
]


@pytest.mark.parametrize("bad", [SURROGATE, NUL, f"ok {SURROGATE} ok"], ids=["surrogate", "nul", "inner-surrogate"])
@pytest.mark.parametrize(("path", "body", "field"), CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_unstorable_text_in_any_field_is_400_and_changes_nothing(
    client: anthropic.Anthropic, raw: httpx2.Client, made: dict[str, str], path: str, body: Any, field: str, bad: str
) -> None:
    before = _everything(client, made)
    content = json.dumps(body(made, bad)).encode()  # ensure_ascii: the escape, as Python clients send it
    response = raw.post(path.format(**made), content=content, headers={"content-type": "application/json"})
    error = assert_error(response, 400, "invalid_request_error", field)
    assert ("NUL" if bad == NUL else "surrogate") in error["message"]
    assert _everything(client, made) == before


def test_surrogate_pairs_are_ordinary_text(
    client: anthropic.Anthropic, raw: httpx2.Client, made: dict[str, str]
) -> None:
    content = json.dumps(_session(made, title="smile \U0001f600")).encode()  # written as \ud83d\ude00
    response = raw.post("/v1/sessions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert client.beta.sessions.retrieve(response.json()["id"]).title == "smile \U0001f600"


def test_body_that_is_not_utf8_is_400(raw: httpx2.Client) -> None:
    response = raw.post(
        "/v1/environments", content=b'{"name": "\xed\xa0\x80"}', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_request_error", "UTF-8")


@pytest.mark.parametrize(
    ("headers", "mentions"),
    [
        (
            b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/pl\x00ain',
            "Content-Type",
        ),
        (b'Content-Disposition: form-data; name="file"; filename="a\x00.txt"\r\nContent-Type: text/plain', "filename"),
    ],
    ids=["content-type", "filename"],
)
def test_nul_in_a_multipart_header_is_400_and_stores_nothing(
    client: anthropic.Anthropic, raw: httpx2.Client, headers: bytes, mentions: str
) -> None:
    before = [f.id for f in client.beta.files.list()]
    body = b"--xx\r\n" + headers + b"\r\n\r\nhello\r\n--xx--\r\n"
    response = raw.post("/v1/files", content=body, headers={"content-type": "multipart/form-data; boundary=xx"})
    error = assert_error(response, 400, "invalid_request_error", mentions)
    assert "NUL" in error["message"]
    assert [f.id for f in client.beta.files.list()] == before


def test_every_route_checks_its_body(tmp_path: Path) -> None:
    """A router made without the checked route class would let unstorable text reach the store."""
    from fastapi.routing import APIRoute

    from agenthost.api.bodies import CheckedRoute
    from agenthost.app import create_app
    from agenthost.settings import Settings

    def api_routes(routes: list[Any]) -> list[APIRoute]:
        found: list[APIRoute] = []
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            elif hasattr(route, "original_router"):  # an included router
                found += api_routes(route.original_router.routes)
        return found

    settings = Settings(data_dir=tmp_path, database_url="sqlite://", api_key="k", sandbox="local")
    routes = api_routes(create_app(settings).routes)
    assert len(routes) > 50
    assert [route.path for route in routes if not isinstance(route, CheckedRoute)] == []
