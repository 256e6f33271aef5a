"""Memory stores, memories and versions through the official SDK in strict mode."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import timedelta
from typing import Any

import anthropic
import httpx2
import pytest

from agenthost.schemas.memory import MAX_MEMORIES, Actor, memory_slug
from agenthost.settings import Settings
from agenthost.store.memory import delete_memory_by_path, list_all, write_memory
from agenthost.store.sql import Store
from tests.conftest import LiveServer, assert_error, run_async


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_store(client: anthropic.Anthropic, name: str = "Notes", **fields: Any) -> Any:
    return client.beta.memory_stores.create(name=name, **fields)


def memories_of(client: anthropic.Anthropic, store_id: str, **params: Any) -> list[Any]:
    return list(client.beta.memory_stores.memories.list(store_id, **params))


def versions_of(client: anthropic.Anthropic, store_id: str, **params: Any) -> list[Any]:
    return list(client.beta.memory_stores.memory_versions.list(store_id, **params))


def in_store(server: LiveServer, work: Any) -> Any:
    """Run ``await work(store)`` against the server's database, as another process of the deployment would."""

    async def run() -> Any:
        store = Store(Settings(database_url=server.database_url).resolved_database_url())
        try:
            return await work(store)
        finally:
            await store.close()

    return run_async(run())


# -- stores ----------------------------------------------------------------------------------------


def test_store_create_retrieve_list_update_delete(client: anthropic.Anthropic) -> None:
    store = new_store(client)
    assert store.type == "memory_store" and store.id.startswith("memstore_")
    assert (store.name, store.description, store.metadata, store.archived_at) == ("Notes", "", {}, None)
    assert store.updated_at == store.created_at
    assert client.beta.memory_stores.retrieve(store.id) == store
    other = new_store(client, "Prefs", description="What the user likes", metadata={"user": "u1"})
    assert [s.id for s in client.beta.memory_stores.list()] == [other.id, store.id]  # newest first

    updated = client.beta.memory_stores.update(other.id, name="Preferences", metadata={"user": None, "team": "t"})
    assert (updated.name, updated.metadata) == ("Preferences", {"team": "t"})
    assert updated.description == "What the user likes"
    assert updated.updated_at > other.updated_at and updated.created_at == other.created_at
    cleared = client.beta.memory_stores.update(other.id, description=None)
    assert cleared.description == ""
    same = client.beta.memory_stores.update(other.id, name="Preferences")  # changes nothing
    assert same == cleared

    deleted = client.beta.memory_stores.delete(store.id)
    assert deleted.id == store.id and deleted.type == "memory_store_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.retrieve(store.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.delete(store.id)
    assert [s.id for s in client.beta.memory_stores.list()] == [other.id]


def test_archive_is_one_way_and_archived_stores_are_read_only(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    memory = client.beta.memory_stores.memories.create(store.id, path="/a.md", content="one")
    second = client.beta.memory_stores.memories.create(store.id, path="/b.md", content="two")
    old = client.beta.memory_stores.memories.update(second.id, memory_store_id=store.id, content="three")
    archived = client.beta.memory_stores.archive(store.id)
    assert archived.archived_at is not None and archived.updated_at == archived.archived_at
    assert client.beta.memory_stores.archive(store.id) == archived  # twice: unchanged
    assert client.beta.memory_stores.retrieve(store.id) == archived

    base = f"/v1/memory_stores/{store.id}"
    assert_error(raw.post(base, json={"name": "x"}), 400, "invalid_request_error", "archived")
    assert_error(raw.post(f"{base}/memories", json={"path": "/c.md", "content": ""}), 400, "invalid_request_error")
    assert_error(raw.post(f"{base}/memories/{memory.id}", json={"content": "x"}), 400, "invalid_request_error")
    assert_error(raw.post(f"{base}/memories/{memory.id}", json={"path": "/z.md"}), 400, "invalid_request_error")
    # Reads, deletes and redactions still work.
    assert client.beta.memory_stores.memories.retrieve(memory.id, memory_store_id=store.id).content == "one"
    assert [m.path for m in memories_of(client, store.id)] == ["/a.md", "/b.md"]
    versions = versions_of(client, store.id, memory_id=second.id)
    redacted = client.beta.memory_stores.memory_versions.redact(versions[-1].id, memory_store_id=store.id)
    assert redacted.redacted_at is not None and old.memory_version_id == versions[0].id
    client.beta.memory_stores.memories.delete(memory.id, memory_store_id=store.id)
    assert [m.path for m in memories_of(client, store.id)] == ["/b.md"]

    assert [s.id for s in client.beta.memory_stores.list()] == []
    assert [s.id for s in client.beta.memory_stores.list(include_archived=True)] == [store.id]
    client.beta.memory_stores.delete(store.id)  # archived stores can be deleted


def test_store_list_pages_and_filters(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    made = [new_store(client, f"s{i}") for i in range(3)]
    page = client.beta.memory_stores.list(limit=2)
    assert [s.id for s in page.data] == [made[2].id, made[1].id] and page.next_page
    rest = client.beta.memory_stores.list(limit=2, page=page.next_page)
    assert [s.id for s in rest.data] == [made[0].id] and rest.next_page is None
    assert [s.id for s in client.beta.memory_stores.list(limit=1)] == [s.id for s in reversed(made)]
    since = client.beta.memory_stores.list(created_at_gte=made[1].created_at)
    assert [s.id for s in since] == [made[2].id, made[1].id]
    until = client.beta.memory_stores.list(created_at_lte=made[1].created_at - timedelta(microseconds=1))
    assert [s.id for s in until] == [made[0].id]
    for limit in (0, 101):
        assert_error(raw.get("/v1/memory_stores", params={"limit": limit}), 400, "invalid_request_error", "limit")
    assert_error(raw.get("/v1/memory_stores", params={"page": "nonsense"}), 400, "invalid_request_error", "page")
    bad_date = {"created_at[gte]": "yesterday"}
    assert_error(raw.get("/v1/memory_stores", params=bad_date), 400, "invalid_request_error", "created_at[gte]")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "ok", "description": "d" * 1025}, "description"),
        ({"name": "ok", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"name": "ok", "metadata": {"k": "v" * 513}}, "metadata"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": 5}, "name"),
    ],
)
def test_bad_store_bodies_are_refused_and_store_nothing(
    client: anthropic.Anthropic, raw: httpx2.Client, body: dict[str, Any], field: str
) -> None:
    assert_error(raw.post("/v1/memory_stores", json=body), 400, "invalid_request_error", field)
    assert list(client.beta.memory_stores.list(include_archived=True)) == []


def test_bad_store_updates_change_nothing(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client, metadata={"a": "1"})
    url = f"/v1/memory_stores/{store.id}"
    for body, field in (
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"description": "d" * 1025}, "description"),
        ({"metadata": {f"k{i}": "v" for i in range(16)}}, "metadata"),
        ({"archived_at": None}, "archived_at"),
    ):
        assert_error(raw.post(url, json=body), 400, "invalid_request_error", field)
    assert client.beta.memory_stores.retrieve(store.id) == store


def test_unpaired_surrogates_are_a_400_not_a_500(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    # The SDK cannot send these; a hand-written client can (JSON allows the escape).
    headers = {"content-type": "application/json"}
    response = raw.post("/v1/memory_stores", content=b'{"name": "a\\ud800"}', headers=headers)
    assert_error(response, 400, "invalid_request_error", "name")
    response = raw.post("/v1/memory_stores", content=b'{"name": "a", "metadata": {"k": "\\udfff"}}', headers=headers)
    assert_error(response, 400, "invalid_request_error", "metadata")
    store = new_store(client)
    url = f"/v1/memory_stores/{store.id}/memories"
    for body, field in (
        (b'{"path": "/a\\ud800", "content": ""}', "path"),
        (b'{"path": "/a", "content": "\\ud800"}', "content"),
    ):
        assert_error(raw.post(url, content=body, headers=headers), 400, "invalid_request_error", field)
    assert memories_of(client, store.id) == []


def test_the_memory_beta_header_and_others_are_accepted(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client, betas=["some-future-beta-2027-01-01"])
    for beta in (None, "agent-memory-2026-07-22", "managed-agents-2026-04-01", "x,agent-memory-2026-07-22"):
        headers = {} if beta is None else {"anthropic-beta": beta}
        response = raw.get(f"/v1/memory_stores/{store.id}", headers=headers)
        assert response.status_code == 200, response.text


def test_memory_slug() -> None:
    assert memory_slug("User Preferences") == "user-preferences"
    assert memory_slug("Project: Apollo / notes (v2)") == "project-apollo-notes-v2"
    assert memory_slug("  --ABC__def--  ") == "abc-def"
    assert memory_slug("café") == "caf"
    assert memory_slug("日本語") == "memory-store"


# -- memories --------------------------------------------------------------------------------------


def test_memory_create_retrieve_and_views(client: anthropic.Anthropic) -> None:
    store = new_store(client)
    memories = client.beta.memory_stores.memories
    created = memories.create(store.id, path="/projects/Foo/notes.md", content="héllo\n")
    assert created.type == "memory" and created.id.startswith("mem_") and created.memory_store_id == store.id
    assert created.content is None  # create answers with view=basic by default
    assert created.content_sha256 == sha("héllo\n") and created.content_size_bytes == len("héllo\n".encode())
    assert created.memory_version_id.startswith("memver_") and created.updated_at == created.created_at

    full = memories.retrieve(created.id, memory_store_id=store.id)  # retrieve defaults to full
    assert full.content == "héllo\n" and full.model_copy(update={"content": None}) == created
    assert memories.retrieve(created.id, memory_store_id=store.id, view="basic") == created
    empty = memories.create(store.id, path="/empty", content="", view="full")
    assert empty.content == "" and empty.content_sha256 == sha("") and empty.content_size_bytes == 0
    nul = memories.create(store.id, path="/binaryish", content="a\x00b")  # content is stored as its UTF-8 bytes
    assert memories.retrieve(nul.id, memory_store_id=store.id).content == "a\x00b"
    assert memories.create(store.id, path="/projects/foo/notes.md", content="x").id != created.id  # case-sensitive
    with pytest.raises(anthropic.NotFoundError):
        memories.retrieve("mem_unknown", memory_store_id=store.id)
    with pytest.raises(anthropic.NotFoundError):
        memories.create("memstore_unknown", path="/a", content="")


PATH_CASES = [
    ("relative/path", "start with '/'"),
    ("/", "empty"),
    ("/a//b", "empty"),
    ("/a/", "empty"),
    ("/a/./b", "'.'"),
    ("/a/../b", "'..'"),
    ("/..", "'..'"),
    ("/a\nb", "control"),
    ("/a\tb", "control"),
    ("/a\u200bb", "format"),  # zero-width space
    ("/a\u2028b", "U+2028"),
    ("/a\u2029b", "U+2029"),
    ("/" + "x" * 1024, "1024 bytes"),
    ("/" + "é" * 512, "1024 bytes"),  # 1025 bytes in UTF-8
    ("/" + "/".join(["s"] * 21), "at most 20 segments"),
    (unicodedata.normalize("NFD", "/café"), "Normalization Form C"),
]


def test_bad_paths_are_refused_and_create_nothing(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    url = f"/v1/memory_stores/{store.id}/memories"
    for path, why in PATH_CASES:
        error = assert_error(raw.post(url, json={"path": path, "content": "x"}), 400, "invalid_request_error", "path")
        assert why in error["message"], (path, error["message"])
    assert_error(raw.post(url, json={"content": "x"}), 400, "invalid_request_error", "path")
    assert memories_of(client, store.id) == []
    assert versions_of(client, store.id) == []
    # The limits themselves are allowed.
    longest = "/" + "x" * 1023
    deepest = "/" + "/".join(["s"] * 20)
    assert client.beta.memory_stores.memories.create(store.id, path=longest, content="").path == longest
    assert client.beta.memory_stores.memories.create(store.id, path=deepest, content="").path == deepest
    nfc = unicodedata.normalize("NFC", "/café")
    assert client.beta.memory_stores.memories.create(store.id, path=nfc, content="").path == nfc


def test_content_rules(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    url = f"/v1/memory_stores/{store.id}/memories"
    biggest = "é" * (102_400 // 2)
    made = client.beta.memory_stores.memories.create(store.id, path="/big", content=biggest)
    assert made.content_size_bytes == 102_400
    for body, mentions in (
        ({"path": "/too-big", "content": biggest + "x"}, "102400 bytes"),
        ({"path": "/null", "content": None}, "content"),
        ({"path": "/missing"}, "content"),
        ({"path": "/number", "content": 5}, "content"),
    ):
        assert_error(raw.post(url, json=body), 400, "invalid_request_error", mentions)
    update = raw.post(f"{url}/{made.id}", json={"content": biggest + "x"})
    assert_error(update, 400, "invalid_request_error", "content")
    assert [m.path for m in memories_of(client, store.id)] == ["/big"]
    assert len(versions_of(client, store.id)) == 1


def test_path_conflicts_name_the_memory_in_the_way(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    memories = client.beta.memory_stores.memories
    notes = memories.create(store.id, path="/notes/todo.md", content="a")
    other = memories.create(store.id, path="/other.md", content="b")
    with pytest.raises(anthropic.ConflictError) as info:
        memories.create(store.id, path="/notes/todo.md", content="again")
    error = info.value.body["error"]  # type: ignore[index]
    assert error["type"] == "memory_path_conflict_error"
    assert error["conflicting_memory_id"] == notes.id and error["conflicting_path"] == "/notes/todo.md"
    assert info.value.response.headers["x-should-retry"] == "false"

    url = f"/v1/memory_stores/{store.id}/memories"
    for path, holder in (("/notes/todo.md/sub", notes), ("/notes", notes), ("/other.md/x/y", other)):
        error = assert_error(raw.post(url, json={"path": path, "content": ""}), 409, "memory_path_conflict_error")
        assert (error["conflicting_memory_id"], error["conflicting_path"]) == (holder.id, holder.path)
    rename = raw.post(f"{url}/{other.id}", json={"path": "/notes/todo.md", "content": "changed"})
    error = assert_error(rename, 409, "memory_path_conflict_error", "/notes/todo.md")
    assert error["conflicting_memory_id"] == notes.id
    assert [(m.path, m.content_sha256) for m in memories_of(client, store.id)] == [
        ("/notes/todo.md", sha("a")),
        ("/other.md", sha("b")),
    ]
    assert len(versions_of(client, store.id)) == 2
    # Siblings whose names only start alike do not overlap.
    assert memories.create(store.id, path="/notes-archive/todo.md", content="").path == "/notes-archive/todo.md"
    assert memories.create(store.id, path="/notes/todo.md.bak", content="").path == "/notes/todo.md.bak"


def test_update_changes_content_and_path_and_keeps_the_id(client: anthropic.Anthropic) -> None:
    store = new_store(client)
    memories = client.beta.memory_stores.memories
    made = memories.create(store.id, path="/a.md", content="v1")
    changed = memories.update(made.id, memory_store_id=store.id, content="v2")
    assert changed.id == made.id and changed.content is None and changed.content_sha256 == sha("v2")
    assert changed.memory_version_id != made.memory_version_id and changed.updated_at > made.updated_at
    moved = memories.update(made.id, memory_store_id=store.id, path="/dir/b.md", view="full")
    assert (moved.id, moved.path, moved.content) == (made.id, "/dir/b.md", "v2")
    both = memories.update(made.id, memory_store_id=store.id, path="/c.md", content="v3", view="full")
    assert (both.path, both.content) == ("/c.md", "v3")
    # A rename into its own subtree is no conflict with itself.
    nested = memories.update(made.id, memory_store_id=store.id, path="/c.md/inner.md")
    assert nested.path == "/c.md/inner.md"
    # Changing nothing writes no version.
    same = memories.update(made.id, memory_store_id=store.id, content="v3", path=None)
    assert same == nested
    assert memories.update(made.id, memory_store_id=store.id) == nested
    ops = [(v.operation, v.path) for v in versions_of(client, store.id, memory_id=made.id)]
    assert ops == [
        ("modified", "/c.md/inner.md"),
        ("modified", "/c.md"),
        ("modified", "/dir/b.md"),
        ("modified", "/a.md"),
        ("created", "/a.md"),
    ]
    assert [m.path for m in memories_of(client, store.id)] == ["/c.md/inner.md"]


def test_preconditions_guard_updates_and_deletes(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    memories = client.beta.memory_stores.memories
    made = memories.create(store.id, path="/a.md", content="v1")
    stale = {"type": "content_sha256", "content_sha256": sha("other")}
    with pytest.raises(anthropic.ConflictError) as info:
        memories.update(made.id, memory_store_id=store.id, content="v2", precondition=stale)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "memory_precondition_failed_error"  # type: ignore[index]
    assert info.value.response.headers["x-should-retry"] == "false"
    fresh = {"type": "content_sha256", "content_sha256": made.content_sha256}
    renamed = memories.update(made.id, memory_store_id=store.id, path="/b.md", precondition=fresh)  # type: ignore[arg-type]
    assert renamed.path == "/b.md" and renamed.content_sha256 == made.content_sha256

    url = f"/v1/memory_stores/{store.id}/memories/{made.id}"
    for precondition, field in (
        ({"type": "content_sha256", "content_sha256": "ABC"}, "precondition.content_sha256"),
        ({"type": "content_sha256", "content_sha256": made.content_sha256.upper()}, "precondition.content_sha256"),
        ({"type": "content_sha256"}, "precondition.content_sha256"),
        ({"type": "etag", "content_sha256": made.content_sha256}, "precondition.type"),
    ):
        body = {"content": "x", "precondition": precondition}
        assert_error(raw.post(url, json=body), 400, "invalid_request_error", field)

    mismatch = raw.delete(url, params={"expected_content_sha256": sha("other")})
    assert_error(mismatch, 409, "memory_precondition_failed_error")
    bad = raw.delete(url, params={"expected_content_sha256": "nothex"})
    assert_error(bad, 400, "invalid_request_error", "expected_content_sha256")
    assert memories.retrieve(made.id, memory_store_id=store.id).content == "v1"
    deleted = memories.delete(made.id, memory_store_id=store.id, expected_content_sha256=made.content_sha256)
    assert deleted.id == made.id and deleted.type == "memory_deleted"
    with pytest.raises(anthropic.NotFoundError):
        memories.delete(made.id, memory_store_id=store.id)
    with pytest.raises(anthropic.NotFoundError):
        memories.update(made.id, memory_store_id=store.id, content="back")


def test_list_by_prefix_and_depth(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    paths = [
        "/notes/todo.md",
        "/notes/2026/jan.md",
        "/notes/2026/feb/week1.md",
        "/notes/b.md",
        "/notes-archive/old.md",
        "/readme.md",
        "/z/deep/er.md",
    ]
    for path in paths:
        client.beta.memory_stores.memories.create(store.id, path=path, content=path)
    listed = memories_of(client, store.id)
    assert [m.path for m in listed] == sorted(paths)  # path order, byte by byte
    assert all(m.type == "memory" and m.content is None for m in listed)

    below = memories_of(client, store.id, path_prefix="/notes/")
    expected = ["/notes/2026/feb/week1.md", "/notes/2026/jan.md", "/notes/b.md", "/notes/todo.md"]
    assert [m.path for m in below] == expected
    top = memories_of(client, store.id, depth=1)
    assert [(m.type, m.path) for m in top] == [
        ("memory_prefix", "/notes-archive/"),
        ("memory_prefix", "/notes/"),
        ("memory", "/readme.md"),
        ("memory_prefix", "/z/"),
    ]
    children = memories_of(client, store.id, path_prefix="/notes/", depth=1, limit=1)  # one item a page
    assert [(m.type, m.path) for m in children] == [
        ("memory_prefix", "/notes/2026/"),
        ("memory", "/notes/b.md"),
        ("memory", "/notes/todo.md"),
    ]
    page = client.beta.memory_stores.memories.list(store.id, depth=1, limit=2)
    assert [m.path for m in page.data] == ["/notes-archive/", "/notes/"] and page.next_page
    rest = client.beta.memory_stores.memories.list(store.id, depth=1, limit=2, page=page.next_page)
    assert [m.path for m in rest.data] == ["/readme.md", "/z/"] and rest.next_page is None
    full = memories_of(client, store.id, path_prefix="/notes/2026/", view="full")
    assert [(m.path, m.content) for m in full] == [(p, p) for p in sorted(paths) if p.startswith("/notes/2026/")]
    assert memories_of(client, store.id, path_prefix="/nothing/") == []

    url = f"/v1/memory_stores/{store.id}/memories"
    for params, field in (
        ({"depth": 2}, "depth"),
        ({"depth": -1}, "depth"),
        ({"depth": "one"}, "depth"),
        ({"path_prefix": "/notes"}, "path_prefix"),
        ({"path_prefix": "notes/"}, "path_prefix"),
        ({"path_prefix": "/a//"}, "path_prefix"),
        ({"view": "everything"}, "view"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"page": "page_xyz"}, "page"),
    ):
        assert_error(raw.get(url, params=params), 400, "invalid_request_error", field)
    stores_cursor = client.beta.memory_stores.list(limit=1)
    new_store(client, "second")
    other_cursor = client.beta.memory_stores.list(limit=1).next_page
    assert stores_cursor is not None and other_cursor is not None
    assert_error(raw.get(url, params={"page": other_cursor}), 400, "invalid_request_error", "another list")


def test_full_view_pages_hold_at_most_twenty(client: anthropic.Anthropic) -> None:
    store = new_store(client)
    for i in range(23):
        client.beta.memory_stores.memories.create(store.id, path=f"/m{i:02d}", content=str(i))
    page = client.beta.memory_stores.memories.list(store.id, view="full", limit=100)
    assert len(page.data) == 20 and page.next_page
    assert [m.content for m in page.data] == [str(i) for i in range(20)]
    rest = client.beta.memory_stores.memories.list(store.id, view="full", limit=100, page=page.next_page)
    assert [m.path for m in rest.data] == ["/m20", "/m21", "/m22"] and rest.next_page is None
    assert len(client.beta.memory_stores.memories.list(store.id, limit=100).data) == 23
    versions = client.beta.memory_stores.memory_versions.list(store.id, view="full", limit=50)
    assert len(versions.data) == 20 and versions.data[0].content == "22"


# -- versions --------------------------------------------------------------------------------------


def test_versions_record_every_change_and_filter(client: anthropic.Anthropic, raw: httpx2.Client, key: str) -> None:
    store = new_store(client)
    memories = client.beta.memory_stores.memories
    made = memories.create(store.id, path="/a.md", content="v1")
    memories.update(made.id, memory_store_id=store.id, content="v2")
    other = memories.create(store.id, path="/b.md", content="b")
    memories.delete(made.id, memory_store_id=store.id)

    versions = versions_of(client, store.id)
    assert [(v.operation, v.memory_id) for v in versions] == [
        ("deleted", made.id),
        ("created", other.id),
        ("modified", made.id),
        ("created", made.id),
    ]
    deleted, _, modified, created = versions
    assert created.path == "/a.md" and created.content is None and created.content_sha256 == sha("v1")
    assert created.content_size_bytes == 2 and created.redacted_at is None and created.redacted_by is None
    assert deleted.path == "/a.md" and deleted.content is None
    assert deleted.content_sha256 is None and deleted.content_size_bytes is None
    author = created.created_by
    assert author is not None and author.type == "api_actor" and author.api_key_id.startswith("apikey_")
    assert all(v.created_by == author for v in versions)
    assert created.memory_store_id == store.id and created.type == "memory_version"

    # Versions outlive the memory; retrieve defaults to the full view.
    assert [v.id for v in versions_of(client, store.id, memory_id=made.id)] == [deleted.id, modified.id, created.id]
    full = client.beta.memory_stores.memory_versions.retrieve(modified.id, memory_store_id=store.id)
    assert full.content == "v2" and full.model_copy(update={"content": None}) == modified
    basic = client.beta.memory_stores.memory_versions.retrieve(modified.id, memory_store_id=store.id, view="basic")
    assert basic == modified
    assert [v.content for v in versions_of(client, store.id, view="full")] == [None, "b", "v2", "v1"]
    assert [v.id for v in versions_of(client, store.id, operation="created")] == [versions[1].id, created.id]
    assert len(versions_of(client, store.id, api_key_id=author.api_key_id)) == 4
    assert versions_of(client, store.id, api_key_id="apikey_other") == []
    assert versions_of(client, store.id, session_id="sesn_none") == []
    assert versions_of(client, store.id, service_account_id="svac_none") == []
    since = versions_of(client, store.id, created_at_gte=versions[1].created_at)
    assert [v.id for v in since] == [deleted.id, versions[1].id]
    until = versions_of(client, store.id, created_at_lte=modified.created_at)
    assert [v.id for v in until] == [modified.id, created.id]
    page = client.beta.memory_stores.memory_versions.list(store.id, limit=3)
    assert len(page.data) == 3 and page.next_page
    assert [v.id for v in versions_of(client, store.id, limit=1)] == [v.id for v in versions]

    url = f"/v1/memory_stores/{store.id}/memory_versions"
    for params, field in (({"operation": "renamed"}, "operation"), ({"view": "x"}, "view"), ({"limit": 0}, "limit")):
        assert_error(raw.get(url, params=params), 400, "invalid_request_error", field)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memory_versions.retrieve("memver_unknown", memory_store_id=store.id)


def test_the_static_key_is_recorded_as_apikey_static(client: anthropic.Anthropic, server: LiveServer) -> None:
    with httpx2.Client(base_url=server.base_url, headers={"x-api-key": "sk-ah-static-test-key"}) as static:
        store = static.post("/v1/memory_stores", json={"name": "static"}).json()
        url = f"/v1/memory_stores/{store['id']}"
        assert static.post(f"{url}/memories", json={"path": "/a", "content": ""}).status_code == 200
        versions = static.get(f"{url}/memory_versions").json()["data"]
        assert versions[0]["created_by"] == {"type": "api_actor", "api_key_id": "apikey_static"}
        assert static.delete(url).status_code == 200


def test_redaction(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    memories = client.beta.memory_stores.memories
    made = memories.create(store.id, path="/secret.md", content="password=1")
    fixed = memories.update(made.id, memory_store_id=store.id, content="password=<redacted>")
    versions = client.beta.memory_stores.memory_versions
    head, first = versions_of(client, store.id)
    assert head.id == fixed.memory_version_id

    refused = raw.post(f"/v1/memory_stores/{store.id}/memory_versions/{head.id}/redact")
    assert_error(refused, 400, "invalid_request_error", "current content")
    redacted = versions.redact(first.id, memory_store_id=store.id)
    assert redacted.id == first.id and redacted.redacted_at is not None
    assert (redacted.path, redacted.content, redacted.content_sha256, redacted.content_size_bytes) == (None,) * 4
    assert redacted.created_by == first.created_by and redacted.created_at == first.created_at
    assert redacted.redacted_by == first.created_by  # the same key redacted it
    assert versions.retrieve(first.id, memory_store_id=store.id) == redacted
    assert versions.redact(first.id, memory_store_id=store.id) == redacted  # again: unchanged
    assert memories.retrieve(made.id, memory_store_id=store.id).content == "password=<redacted>"

    # Once the memory is gone, its last versions can be redacted too.
    memories.delete(made.id, memory_store_id=store.id)
    gone, last, _ = versions_of(client, store.id)
    assert versions.redact(last.id, memory_store_id=store.id).path is None
    assert versions.redact(gone.id, memory_store_id=store.id).operation == "deleted"
    with pytest.raises(anthropic.NotFoundError):
        versions.redact("memver_unknown", memory_store_id=store.id)


def test_deleting_a_store_removes_its_memories_and_versions(client: anthropic.Anthropic, server: LiveServer) -> None:
    store = new_store(client)
    made = client.beta.memory_stores.memories.create(store.id, path="/a", content="x")
    client.beta.memory_stores.memories.update(made.id, memory_store_id=store.id, content="y")
    keep = new_store(client, "keep")
    client.beta.memory_stores.memories.create(keep.id, path="/a", content="x")
    client.beta.memory_stores.delete(store.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memories.retrieve(made.id, memory_store_id=store.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memory_versions.list(store.id)

    async def count(db: Store) -> tuple[int, int]:
        import sqlalchemy as sa

        def read(conn: sa.Connection) -> tuple[int, int]:
            mems = conn.execute(sa.text("SELECT count(*) FROM memories WHERE store_id = :s"), {"s": store.id})
            vers = conn.execute(sa.text("SELECT count(*) FROM memory_versions WHERE store_id = :s"), {"s": store.id})
            return mems.scalar_one(), vers.scalar_one()

        return await db.db.run_read(read)

    assert in_store(server, count) == (0, 0)
    assert [m.path for m in memories_of(client, keep.id)] == ["/a"]


def test_a_full_store_refuses_new_memories_but_edits_work(
    client: anthropic.Anthropic, raw: httpx2.Client, server: LiveServer
) -> None:
    store = new_store(client)
    actor = Actor.session("sesn_filler")

    async def fill(db: Store) -> None:
        def write(conn: Any) -> None:
            for i in range(MAX_MEMORIES):
                write_memory(conn, store.id, f"/m/{i:04d}", "", actor)

        await db.db.run_write(write)

    in_store(server, fill)
    url = f"/v1/memory_stores/{store.id}/memories"
    assert_error(raw.post(url, json={"path": "/one-more", "content": ""}), 400, "invalid_request_error", "2000")
    first = client.beta.memory_stores.memories.list(store.id, limit=1).data[0]
    assert first.path == "/m/0000"
    edited = client.beta.memory_stores.memories.update(first.id, memory_store_id=store.id, content="edited")
    assert edited.content_sha256 == sha("edited")
    client.beta.memory_stores.memories.delete(first.id, memory_store_id=store.id)
    assert client.beta.memory_stores.memories.create(store.id, path="/one-more", content="").path == "/one-more"


def test_other_workspaces_see_nothing(
    client: anthropic.Anthropic, other_client: anthropic.Anthropic, raw: httpx2.Client
) -> None:
    store = new_store(client)
    made = client.beta.memory_stores.memories.create(store.id, path="/a", content="x")
    version = versions_of(client, store.id)[0]
    theirs = other_client.beta.memory_stores
    assert list(theirs.list(include_archived=True)) == []
    calls = [
        lambda: theirs.retrieve(store.id),
        lambda: theirs.update(store.id, name="mine"),
        lambda: theirs.archive(store.id),
        lambda: theirs.delete(store.id),
        lambda: theirs.memories.create(store.id, path="/b", content=""),
        lambda: theirs.memories.list(store.id),
        lambda: theirs.memories.retrieve(made.id, memory_store_id=store.id),
        lambda: theirs.memories.update(made.id, memory_store_id=store.id, content="y"),
        lambda: theirs.memories.delete(made.id, memory_store_id=store.id),
        lambda: theirs.memory_versions.list(store.id),
        lambda: theirs.memory_versions.retrieve(version.id, memory_store_id=store.id),
        lambda: theirs.memory_versions.redact(version.id, memory_store_id=store.id),
    ]
    for call in calls:
        with pytest.raises(anthropic.NotFoundError):
            call()
    assert client.beta.memory_stores.retrieve(store.id) == store
    assert client.beta.memory_stores.memories.retrieve(made.id, memory_store_id=store.id).content == "x"
    assert versions_of(client, store.id) == [version]
    # Ids of another store of the same workspace are not found through this one either.
    second = new_store(client, "second")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memories.retrieve(made.id, memory_store_id=second.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.memory_stores.memory_versions.retrieve(version.id, memory_store_id=second.id)


def test_environment_keys_cannot_use_memory_stores(client: anthropic.Anthropic, server: LiveServer) -> None:
    env = client.beta.environments.create(name="worker-env", config={"type": "self_hosted"})
    store = new_store(client)
    with httpx2.Client(base_url=server.base_url, headers={"x-api-key": server.environment_key(env.id)}) as worker:
        assert_error(worker.get(f"/v1/memory_stores/{store.id}"), 403, "permission_error")
        assert_error(worker.post("/v1/memory_stores", json={"name": "x"}), 403, "permission_error")


# -- the engine's functions ------------------------------------------------------------------------


def test_session_writes_through_the_repository(client: anthropic.Anthropic, server: LiveServer) -> None:
    store = new_store(client)
    session = Actor.session("sesn_writer")
    existing = client.beta.memory_stores.memories.create(store.id, path="/api.md", content="from the api")

    async def work(db: Store) -> dict[str, Any]:
        repo = db.memory_stores
        made = await repo.write_memory(store.id, "/notes/a.md", "one", session)
        same = await repo.write_memory(store.id, "/notes/a.md", "one", session)  # no change, no version
        changed = await repo.write_memory(store.id, "/notes/a.md", "two", session, expected_sha256=sha("one"))
        outcomes: dict[str, Any] = {"made": made, "same": same, "changed": changed}
        for name, call in (
            ("stale", repo.write_memory(store.id, "/notes/a.md", "3", session, expected_sha256=sha("one"))),
            ("absent", repo.write_memory(store.id, "/nope.md", "3", session, expected_sha256=sha("one"))),
            ("overlap", repo.write_memory(store.id, "/notes/a.md/x", "3", session)),
            ("bad_path", repo.write_memory(store.id, "notes", "3", session)),
            ("no_store", repo.write_memory("memstore_none", "/a", "3", session)),
            ("stale_delete", repo.delete_memory_by_path(store.id, "/api.md", session, expected_sha256=sha("x"))),
        ):
            try:
                await call
            except Exception as exc:  # each must fail: record how
                outcomes[name] = (type(exc).__name__, getattr(exc, "wire_type", None))
        outcomes["listing"] = await repo.list_all(store.id)
        outcomes["deleted"] = await repo.delete_memory_by_path(store.id, "/api.md", session)
        outcomes["deleted_again"] = await repo.delete_memory_by_path(store.id, "/api.md", session)
        outcomes["in_transaction"] = await db.db.run_write(
            lambda conn: (
                write_memory(conn, store.id, "/t.md", "t", session),
                delete_memory_by_path(conn, store.id, "/t.md", session),
                list_all(conn, store.id),
            )
        )
        return outcomes

    out = in_store(server, work)
    assert out["made"]["path"] == "/notes/a.md" and out["made"]["content"] is None
    assert out["same"] == out["made"]
    assert out["changed"]["id"] == out["made"]["id"] and out["changed"]["content_sha256"] == sha("two")
    assert out["stale"] == ("MemoryPreconditionFailed", "memory_precondition_failed_error")
    assert out["absent"] == ("MemoryPreconditionFailed", "memory_precondition_failed_error")
    assert out["overlap"] == ("MemoryPathConflict", "memory_path_conflict_error")
    assert out["bad_path"] == ("InvalidRequest", "invalid_request_error")
    assert out["no_store"] == ("NotFound", "not_found_error")
    assert out["stale_delete"] == ("MemoryPreconditionFailed", "memory_precondition_failed_error")
    listing = out["listing"]
    assert sorted(listing) == ["/api.md", "/notes/a.md"]
    assert (listing["/notes/a.md"].id, listing["/notes/a.md"].content) == (out["made"]["id"], "two")
    assert listing["/api.md"].content_sha256 == existing.content_sha256
    assert out["deleted"] == existing.id and out["deleted_again"] is None
    made_id, deleted_id, remaining = out["in_transaction"]
    assert made_id["path"] == "/t.md" and deleted_id == made_id["id"] and sorted(remaining) == ["/notes/a.md"]

    by_session = versions_of(client, store.id, session_id="sesn_writer")
    assert [(v.operation, v.path) for v in by_session] == [
        ("deleted", "/t.md"),
        ("created", "/t.md"),
        ("deleted", "/api.md"),
        ("modified", "/notes/a.md"),
        ("created", "/notes/a.md"),
    ]
    assert by_session[0].created_by is not None and by_session[0].created_by.type == "session_actor"
    assert json.loads(by_session[0].created_by.to_json()) == {"type": "session_actor", "session_id": "sesn_writer"}
    # An archived store refuses the engine's writes too, and still lets it delete.
    client.beta.memory_stores.archive(store.id)

    async def archived(db: Store) -> tuple[str, str | None]:
        try:
            await db.memory_stores.write_memory(store.id, "/new.md", "x", session)
        except Exception as exc:
            refused = type(exc).__name__
        return refused, await db.memory_stores.delete_memory_by_path(store.id, "/notes/a.md", session)

    assert in_store(server, archived) == ("InvalidRequest", out["made"]["id"])


def test_odd_ids_and_query_values_are_client_errors(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    store = new_store(client)
    base = f"/v1/memory_stores/{store.id}"
    odd = ["%ED%A0%80", "x" * 300, "%FF%FE", "%E2%80%A8"]
    for value in odd:
        for method, url in (
            ("GET", f"/v1/memory_stores/{value}"),
            ("GET", f"{base}/memories/{value}"),
            ("DELETE", f"{base}/memories/{value}"),
            ("GET", f"{base}/memory_versions/{value}"),
            ("POST", f"{base}/memory_versions/{value}/redact"),
        ):
            assert_error(raw.request(method, url), 404, "not_found_error")
        for query in (
            f"path_prefix={value}",
            f"path_prefix=/{value}/",
            f"memory_id={value}&session_id={value}&api_key_id={value}",
        ):
            target = f"{base}/memories" if query.startswith("path") else f"{base}/memory_versions"
            response = raw.get(f"{target}?{query}")
            assert response.status_code in (200, 400), response.text
    assert_error(raw.get(f"{base}/memories?path_prefix=/%00/"), 400, "invalid_request_error")
