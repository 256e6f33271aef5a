"""The Files API and file resources of sessions, driven with the official SDK in strict mode."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, assert_error


def upload(client: anthropic.Anthropic, name: str = "notes.txt", data: bytes = b"hello\n", **kw: Any) -> Any:
    return client.beta.files.upload(file=(name, io.BytesIO(data), "text/plain"), **kw)


def test_upload_retrieve_list_delete(client: anthropic.Anthropic) -> None:
    first = upload(client, "a/b/report.csv", b"x,y\n1,2\n")
    assert first.type == "file" and first.id.startswith("file_")
    assert first.filename == "report.csv"  # only the last path component is kept
    assert first.size_bytes == 8 and first.mime_type == "text/plain"
    assert first.downloadable is False and first.expires_at is None and first.scope is None
    expiring = upload(client, "later.txt", expires_in_seconds=3600)
    assert expiring.expires_at is not None
    assert expiring.expires_at - expiring.created_at == timedelta(seconds=3600)
    assert client.beta.files.retrieve_metadata(first.id) == first

    listed = list(client.beta.files.list(limit=1))  # the SDK follows next_page
    assert [f.id for f in listed] == [expiring.id, first.id]  # newest first
    only = client.beta.files.list(ids=[first.id, "file_unknown", first.id])
    assert [f.id for f in only.data] == [first.id] and only.next_page is None

    deleted = client.beta.files.delete(first.id)
    assert deleted.id == first.id and deleted.type == "file_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(first.id)
    assert [f.id for f in client.beta.files.list()] == [expiring.id]


def test_an_upload_is_not_downloadable_and_other_workspaces_do_not_see_it(
    client: anthropic.Anthropic, other_client: anthropic.Anthropic, raw: httpx2.Client
) -> None:
    uploaded = upload(client)
    response = raw.get(f"/v1/files/{uploaded.id}/content")
    error = assert_error(response, 400, "invalid_request_error", "cannot be downloaded")
    assert error["details"]["error_code"] == "file_not_downloadable"
    with pytest.raises(anthropic.NotFoundError):
        other_client.beta.files.retrieve_metadata(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        other_client.beta.files.delete(uploaded.id)
    assert list(other_client.beta.files.list()) == []
    assert client.beta.files.retrieve_metadata(uploaded.id) == uploaded


def test_bad_uploads_are_refused_and_store_nothing(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    files = {"file": ("x.txt", b"data", "text/plain")}
    for value in ("10", "7776001", "soon", "²", "--5"):
        response = raw.post("/v1/files", files=files, data={"expires_in_seconds": value})
        assert_error(response, 400, "invalid_request_error", "expires_in_seconds")
    assert_error(raw.post("/v1/files", data={"expires_in_seconds": "3600"}), 400, "invalid_request_error", "file")
    assert_error(raw.post("/v1/files", files=files, data={"purpose": "x"}), 400, "invalid_request_error", "purpose")
    assert_error(raw.post("/v1/files", json={"file": "x"}), 400, "invalid_request_error", "multipart/form-data")
    assert list(client.beta.files.list()) == []


def test_unnamed_file_gets_a_name_from_its_type(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    response = raw.post("/v1/files", files={"file": ("", b"{}", "application/json")})
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "unnamed.json"


def test_list_pages_and_ids_rules(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    made = [upload(client, f"f{i}.txt").id for i in range(3)]
    page = client.beta.files.list(limit=2)
    assert [f.id for f in page.data] == made[::-1][:2] and page.next_page
    rest = client.beta.files.list(limit=2, page=page.next_page)
    assert [f.id for f in rest.data] == [made[0]] and rest.next_page is None
    assert_error(raw.get("/v1/files", params={"ids[]": made[0], "limit": 5}), 400, "invalid_request_error", "ids")
    many = [("ids[]", f"file_{i}") for i in range(101)]
    assert_error(raw.get("/v1/files", params=many), 400, "invalid_request_error", "at most 100")
    assert_error(raw.get("/v1/files", params={"limit": 1001}), 400, "invalid_request_error", "limit")


def test_session_gets_its_own_copy_of_an_attached_file(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    agent = client.beta.agents.create(**AGENT)
    env = client.beta.environments.create(name="files-env")
    uploaded = upload(client, "data.csv", b"a,b\n")
    session = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        resources=[
            {"type": "file", "file_id": uploaded.id},
            {"type": "file", "file_id": uploaded.id, "mount_path": "/in/data.csv"},
        ],
    )
    first, second = session.resources
    assert first.type == "file" and second.type == "file"
    assert first.mount_path == f"/mnt/session/uploads/{uploaded.id}"
    assert second.mount_path == "/mnt/session/uploads/in/data.csv"
    assert len({first.file_id, second.file_id, uploaded.id}) == 3  # each resource has its own copy
    copy = client.beta.files.retrieve_metadata(first.file_id)
    assert copy.filename == "data.csv" and copy.size_bytes == 4
    assert copy.scope is not None and copy.scope.id == session.id
    # The copy is the session's: the upload can go, the copy stays, and it cannot be deleted by itself.
    client.beta.files.delete(uploaded.id)
    assert client.beta.files.retrieve_metadata(second.file_id).id == second.file_id
    assert_error(raw.delete(f"/v1/files/{first.file_id}"), 400, "invalid_request_error", "resource")
    assert [r.id for r in client.beta.sessions.resources.list(session.id)] == [first.id, second.id]
    assert client.beta.sessions.resources.retrieve(second.id, session_id=session.id) == second

    client.beta.sessions.delete(session.id)
    for resource in (first, second):
        with pytest.raises(anthropic.NotFoundError):
            client.beta.files.retrieve_metadata(resource.file_id)


def test_resources_add_list_page_and_delete(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    agent = client.beta.agents.create(**AGENT)
    env = client.beta.environments.create(name="files-env")
    session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    uploads = [upload(client, f"in{i}.txt") for i in range(3)]
    added = [
        client.beta.sessions.resources.add(session.id, type="file", file_id=u.id, mount_path=f"/in/{i}.txt")
        for i, u in enumerate(uploads)
    ]
    assert [r.mount_path for r in added] == [f"/mnt/session/uploads/in/{i}.txt" for i in range(3)]
    assert client.beta.sessions.retrieve(session.id).resources == added
    page = client.beta.sessions.resources.list(session.id, limit=2)
    assert [r.id for r in page.data] == [added[0].id, added[1].id] and page.next_page
    assert [r.id for r in client.beta.sessions.resources.list(session.id, limit=2, page=page.next_page).data] == [
        added[2].id
    ]
    deleted = client.beta.sessions.resources.delete(added[1].id, session_id=session.id)
    assert deleted.id == added[1].id and deleted.type == "session_resource_deleted"
    assert [r.id for r in client.beta.sessions.resources.list(session.id)] == [added[0].id, added[2].id]
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(added[1].file_id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.retrieve(added[1].id, session_id=session.id)
    response = raw.post(f"/v1/sessions/{session.id}/resources/{added[0].id}", json={"authorization_token": "t"})
    assert_error(response, 400, "invalid_request_error", "only github_repository")


def test_bad_resources_are_refused_and_change_nothing(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    agent = client.beta.agents.create(**AGENT)
    env = client.beta.environments.create(name="files-env")
    uploaded = upload(client)
    base = {"agent": agent.id, "environment_id": env.id}
    cases = [
        ([{"type": "file", "file_id": "file_nope"}], 404, "resources[0].file_id"),
        ([{"type": "file", "file_id": uploaded.id, "mount_path": "/a/../b"}], 400, "resources[0].mount_path"),
        ([{"type": "file", "file_id": uploaded.id, "extra": 1}], 400, "resources[0].extra"),
        ([{"type": "file", "file_id": uploaded.id, "mount_path": "/x"}] * 2, 400, "collides"),
        (
            [
                {"type": "file", "file_id": uploaded.id, "mount_path": "/x"},
                {"type": "file", "file_id": uploaded.id, "mount_path": "/x/y"},
            ],
            400,
            "collides",
        ),
        ([{"type": "github_repository", "url": "https://gitlab.com/a/b"}], 400, "resources[0].url"),
        ([{"type": "volume"}], 400, "resources[0].type"),
    ]
    for resources, status, mention in cases:
        response = raw.post("/v1/sessions", json={**base, "resources": resources})
        assert_error(response, status, "not_found_error" if status == 404 else "invalid_request_error", mention)
    assert list(client.beta.sessions.list()) == []
    assert [f.id for f in client.beta.files.list()] == [uploaded.id]  # no copies were left behind

    session = client.beta.sessions.create(**base)
    path = f"/v1/sessions/{session.id}/resources"
    assert_error(raw.post(path, json={"type": "file", "file_id": "file_nope"}), 404, "not_found_error", "file_id")
    assert_error(
        raw.post(path, json={"type": "memory_store", "memory_store_id": "m"}),
        400,
        "invalid_request_error",
        "only be attached when the session is created",
    )
    client.beta.sessions.archive(session.id)
    assert_error(raw.post(path, json={"type": "file", "file_id": uploaded.id}), 409, "invalid_request_error")
    assert client.beta.sessions.retrieve(session.id).resources == []


def test_upload_over_the_limit_is_413_and_keeps_nothing(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    """Test servers keep files to 1 MiB (max_file_bytes)."""
    big = {"file": ("big.bin", b"x" * (1024 * 1024 + 1), "application/octet-stream")}
    assert_error(raw.post("/v1/files", files=big), 413, "request_too_large", "file")
    exact = upload(client, "exact.bin", b"x" * (1024 * 1024))
    assert [f.id for f in client.beta.files.list()] == [exact.id]


def test_self_hosted_sessions_take_no_files_or_memory_stores(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    """A self-hosted worker runs the tools on its own machine, where nothing the server mounts would be."""
    agent = client.beta.agents.create(**AGENT)
    env = client.beta.environments.create(name="own-machines", config={"type": "self_hosted"})
    uploaded = upload(client)
    store = client.beta.memory_stores.create(name="notes")
    base = {"agent": agent.id, "environment_id": env.id}
    for resource in ({"type": "file", "file_id": uploaded.id}, {"type": "memory_store", "memory_store_id": store.id}):
        response = raw.post("/v1/sessions", json={**base, "resources": [resource]})
        assert_error(response, 400, "invalid_request_error", "self-hosted environments")
    assert list(client.beta.sessions.list()) == []
    assert [f.id for f in client.beta.files.list()] == [uploaded.id]  # no copy was left behind
    session = client.beta.sessions.create(**base)
    response = raw.post(f"/v1/sessions/{session.id}/resources", json={"type": "file", "file_id": uploaded.id})
    assert_error(response, 400, "invalid_request_error", "self-hosted environments")
    assert client.beta.sessions.retrieve(session.id).resources == []
