"""GitHub repository resources of sessions through the API, with the official SDK in strict mode.

Cloning is tested end to end in tests/engine/test_repositories.py; here: validation, the wire
shape, token rotation, and the repository set staying fixed.
"""

from __future__ import annotations

import io
from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import assert_error

TOKEN = "ghp_apitesttoken0123456789"
URL = "https://github.com/acme/widgets"
SHA = "0123456789abcdef0123456789abcdef01234567"


def _create(client: anthropic.Anthropic, agent: Any, environment: Any, *resources: Any) -> Any:
    return client.beta.sessions.create(agent=agent.id, environment_id=environment.id, resources=list(resources))


def test_repositories_are_created_with_their_defaults_and_never_show_the_token(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any
) -> None:
    session = _create(
        client,
        agent,
        environment,
        {"type": "github_repository", "url": URL, "authorization_token": TOKEN},
        {
            "type": "github_repository",
            "url": "https://github.com/acme/gadgets.js/",
            "checkout": {"type": "branch", "name": "release/v1.2"},
            "mount_path": "src/gadgets",
        },
        {
            "type": "github_repository",
            "url": URL,
            "checkout": {"type": "commit", "sha": SHA.upper()},
            "mount_path": "/workspace/pinned",
        },
    )
    first, second, third = session.resources
    assert first.type == "github_repository" and first.id.startswith("sesrsc_")
    assert (first.url, first.mount_path, first.checkout) == (URL, "/workspace/widgets", None)
    assert first.created_at == first.updated_at == session.created_at
    assert second.type == "github_repository" and second.url == "https://github.com/acme/gadgets.js"  # no slash
    assert second.mount_path == "/workspace/src/gadgets"
    assert second.checkout is not None and second.checkout.type == "branch" and second.checkout.name == "release/v1.2"
    assert third.type == "github_repository" and third.mount_path == "/workspace/pinned"
    assert third.checkout is not None and third.checkout.type == "commit" and third.checkout.sha == SHA  # lower case

    assert client.beta.sessions.retrieve(session.id).resources == session.resources
    assert list(client.beta.sessions.resources.list(session.id)) == session.resources
    assert client.beta.sessions.resources.retrieve(first.id, session_id=session.id) == first
    for path in (f"/v1/sessions/{session.id}", f"/v1/sessions/{session.id}/resources"):
        text = raw.get(path).text
        assert TOKEN not in text and "authorization_token" not in text


@pytest.mark.parametrize(
    ("resource", "mentions"),
    [
        ({"url": "https://github.com/acme/widgets.git"}, "resources[0].url"),
        ({"url": "git@github.com:acme/widgets"}, "resources[0].url"),
        ({"url": "http://github.com/acme/widgets"}, "resources[0].url"),
        ({"url": "https://gitlab.com/acme/widgets"}, "resources[0].url"),
        ({"url": "https://github.com/acme/widgets/tree/main"}, "resources[0].url"),
        ({"url": "https://github.com/acme"}, "resources[0].url"),
        ({"url": "https://github.com/-acme/widgets"}, "resources[0].url"),
        ({"url": "https://github.com/acme/widgets?x=1"}, "resources[0].url"),
        ({"url": "https://user@github.com/acme/widgets"}, "resources[0].url"),
        ({"mount_path": "/mnt/session/widgets"}, "resources[0].mount_path"),
        ({"mount_path": "/workspace"}, "resources[0].mount_path"),
        ({"mount_path": "/workspace/../etc"}, "resources[0].mount_path"),
        ({"mount_path": "a//b"}, "resources[0].mount_path"),
        ({"checkout": {"type": "commit", "sha": "abc123"}}, "resources[0].checkout.sha"),
        ({"checkout": {"type": "branch", "name": "--upload-pack=evil"}}, "resources[0].checkout.name"),
        ({"checkout": {"type": "branch", "name": "a..b"}}, "resources[0].checkout.name"),
        ({"checkout": {"type": "branch", "name": ""}}, "resources[0].checkout.name"),
        ({"checkout": {"type": "tag", "name": "v1"}}, "resources[0].checkout"),
        ({"authorization_token": ""}, "resources[0].authorization_token"),
        ({"authorization_token": "abc\r\nX-Evil: 1"}, "resources[0].authorization_token"),
        ({"token": "x"}, "resources[0].token"),
        ({"url": None}, "resources[0].url"),
    ],
)
def test_bad_repositories_are_refused_naming_the_field_and_create_nothing(
    client: anthropic.Anthropic,
    raw: httpx2.Client,
    agent: Any,
    environment: Any,
    resource: dict[str, Any],
    mentions: str,
) -> None:
    body = {
        "agent": agent.id,
        "environment_id": environment.id,
        "resources": [{"type": "github_repository", "url": URL, **resource}],
    }
    assert_error(raw.post("/v1/sessions", json=body), 400, "invalid_request_error", mentions)
    assert list(client.beta.sessions.list(include_archived=True)) == []


def test_colliding_and_too_many_repositories_are_refused(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any
) -> None:
    base = {"agent": agent.id, "environment_id": environment.id}
    repo = {"type": "github_repository", "url": URL}
    nested = {**repo, "url": "https://github.com/acme/other", "mount_path": "/workspace/widgets/vendor"}
    many = [{**repo, "mount_path": f"r{i}"} for i in range(21)]
    for resources, mentions in (
        ([repo, repo], "collides"),
        ([repo, nested], "collides"),
        (many, "at most 20 repository"),
    ):
        assert_error(
            raw.post("/v1/sessions", json={**base, "resources": resources}), 400, "invalid_request_error", mentions
        )
    assert list(client.beta.sessions.list(include_archived=True)) == []
    # Twenty is allowed, and repositories and files never collide (files live under /mnt/session/uploads).
    upload = client.beta.files.upload(file=("widgets", io.BytesIO(b"x"), "text/plain"))
    session = _create(client, agent, environment, *many[:20], {"type": "file", "file_id": upload.id})
    assert len(session.resources) == 21


def test_the_token_rotates_and_repositories_are_fixed(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any
) -> None:
    upload = client.beta.files.upload(file=("notes.txt", io.BytesIO(b"x"), "text/plain"))
    session = _create(
        client,
        agent,
        environment,
        {"type": "github_repository", "url": URL, "authorization_token": TOKEN},
        {"type": "file", "file_id": upload.id},
    )
    repo, attached = session.resources
    rotated = client.beta.sessions.resources.update(repo.id, session_id=session.id, authorization_token="ghp_new")
    assert rotated.type == "github_repository" and rotated.id == repo.id and rotated.url == URL
    assert rotated.created_at == repo.created_at and rotated.updated_at > repo.updated_at
    assert client.beta.sessions.resources.retrieve(repo.id, session_id=session.id) == rotated
    assert "ghp_new" not in raw.get(f"/v1/sessions/{session.id}").text

    path = f"/v1/sessions/{session.id}/resources"
    for token in ("", "two words", "x" * 4097):
        response = raw.post(f"{path}/{repo.id}", json={"authorization_token": token})
        assert_error(response, 400, "invalid_request_error", "authorization_token")
    assert_error(raw.post(f"{path}/{repo.id}", json={}), 400, "invalid_request_error", "authorization_token")
    response = raw.post(f"{path}/{attached.id}", json={"authorization_token": "t"})
    assert_error(response, 400, "invalid_request_error", "only github_repository")
    assert_error(raw.post(f"{path}/sesrsc_nope", json={"authorization_token": "t"}), 404, "not_found_error")
    added = raw.post(path, json={"type": "github_repository", "url": "https://github.com/acme/more"})
    assert_error(added, 400, "invalid_request_error", "only be attached when the session is created")
    assert_error(raw.delete(f"{path}/{repo.id}"), 400, "invalid_request_error", "fixed for the session's life")
    assert [r.id for r in client.beta.sessions.resources.list(session.id)] == [repo.id, attached.id]

    client.beta.sessions.archive(session.id)
    with pytest.raises(anthropic.ConflictError):
        client.beta.sessions.resources.update(repo.id, session_id=session.id, authorization_token="ghp_late")
