"""The Skills API and custom skill references, driven with the official SDK in strict mode."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.lib import files_from_dir
from anthropic.types.beta.organization import BetaSkillNameTakenError

from tests.conftest import AGENT, LiveServer, assert_error, sdk

READ_TOOLS = [{"type": "agent_toolset_20260401"}]


def skill_md(
    name: str | None = "my-skill", description: str = "Does useful things.", body: str = "# Use me\n"
) -> bytes:
    lines = ["---"]
    if name is not None:
        lines.append(f"name: {name}")
    lines += [f"description: {description}", "---", body]
    return "\n".join(lines).encode()


def skill_files(name: str = "my-skill", top: str | None = None, **kw: Any) -> list[Any]:
    top = top or name
    return [
        (f"{top}/SKILL.md", skill_md(name, **kw), "text/markdown"),
        (f"{top}/reference/notes.md", b"Some notes.\n", "text/markdown"),
    ]


def make_skill(client: anthropic.Anthropic, name: str = "my-skill", **kw: Any) -> Any:
    return client.beta.skills.create(files=skill_files(name, **kw))


def unzip(data: bytes) -> dict[str, tuple[bytes, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: (archive.read(info), info.external_attr >> 16) for info in archive.infolist()}


def test_create_from_a_directory_retrieve_list_and_delete(client: anthropic.Anthropic, tmp_path: Path) -> None:
    root = tmp_path / "pdf-tools"
    (root / "scripts").mkdir(parents=True)
    (root / "SKILL.md").write_bytes(skill_md("pdf-tools", "Fills PDF forms."))
    (root / "scripts" / "fill.py").write_bytes(b"#!/usr/bin/env python3\nprint('ok')\n")
    skill = client.beta.skills.create(files=files_from_dir(root))  # the SDK's own helper
    assert skill.type == "skill" and skill.id.startswith("skill_")
    assert skill.display_name == "pdf-tools"  # defaults to the frontmatter name
    assert skill.source.type == "custom" and skill.created_at == skill.updated_at
    assert skill.latest_version_id.startswith("skillver_")
    assert client.beta.skills.retrieve(skill.id) == skill
    assert [s.id for s in client.beta.skills.list()] == [skill.id]
    assert [s.id for s in client.beta.skills.list(source="custom")] == [skill.id]
    assert client.beta.skills.list(source="anthropic").data == []

    version = client.beta.skills.versions.retrieve("latest", skill_id=skill.id)
    assert version.id == skill.latest_version_id and version.type == "skill_version"
    assert version.name == "pdf-tools" and version.description == "Fills PDF forms." and version.skill_id == skill.id

    deleted = client.beta.skills.delete(skill.id)
    assert deleted.id == skill.id and deleted.type == "skill_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.retrieve(skill.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.versions.retrieve(version.id, skill_id=skill.id)
    assert list(client.beta.skills.list()) == []
    again = make_skill(client, "pdf-tools")  # the name is free again
    assert again.id != skill.id


def test_download_is_a_zip_under_the_skill_name(client: anthropic.Anthropic) -> None:
    files = [
        ("folder/SKILL.md", skill_md("renamed"), "text/markdown"),
        ("folder/scripts/run.sh", io.BytesIO(b"#!/bin/sh\necho hi\n")),
        ("folder/data/empty.txt", b""),
    ]
    skill = client.beta.skills.create(files=files, display_name="Renamed skill")
    assert skill.display_name == "Renamed skill"
    content = client.beta.skills.versions.download(skill.latest_version_id, skill_id=skill.id)
    entries = unzip(content.read())
    assert sorted(entries) == ["renamed/SKILL.md", "renamed/data/empty.txt", "renamed/scripts/run.sh"]
    assert entries["renamed/SKILL.md"][0] == skill_md("renamed")
    assert entries["renamed/scripts/run.sh"] == (b"#!/bin/sh\necho hi\n", stat.S_IFREG | 0o755)
    assert entries["renamed/data/empty.txt"] == (b"", stat.S_IFREG | 0o644)
    latest = client.beta.skills.versions.download("latest", skill_id=skill.id)
    assert unzip(latest.read()) == entries


def test_versions_latest_pagination_and_deletion(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    skill = make_skill(client)
    first = skill.latest_version_id
    second = client.beta.skills.versions.create(skill.id, files=skill_files(description="Second."))
    third = client.beta.skills.versions.create(skill.id, files=skill_files(description="Third."))
    assert second.name == "my-skill" and second.description == "Second."
    current = client.beta.skills.retrieve(skill.id)
    assert current.latest_version_id == third.id and current.updated_at > skill.updated_at
    assert current.display_name == skill.display_name and current.created_at == skill.created_at
    assert client.beta.skills.versions.retrieve("latest", skill_id=skill.id) == third
    assert client.beta.skills.versions.retrieve(second.id, skill_id=skill.id) == second

    page = client.beta.skills.versions.list(skill.id, limit=2)
    assert [v.id for v in page.data] == [third.id, second.id] and page.next_page
    assert [v.id for v in client.beta.skills.versions.list(skill.id, limit=2, page=page.next_page).data] == [first]
    assert [v.id for v in client.beta.skills.versions.list(skill.id, limit=1)] == [third.id, second.id, first]

    deleted = client.beta.skills.versions.delete(third.id, skill_id=skill.id)
    assert deleted.id == third.id and deleted.type == "skill_version_deleted"
    assert client.beta.skills.retrieve(skill.id).latest_version_id == second.id  # the newest remaining one
    with pytest.raises(anthropic.NotFoundError):
        client.beta.skills.versions.download(third.id, skill_id=skill.id)
    client.beta.skills.versions.delete(first, skill_id=skill.id)
    assert client.beta.skills.retrieve(skill.id).latest_version_id == second.id

    path = f"/v1/skills/{skill.id}/versions"
    assert_error(raw.delete(f"{path}/{second.id}"), 409, "invalid_request_error", "delete the skill instead")
    assert_error(raw.delete(f"{path}/latest"), 400, "invalid_request_error", "version")
    assert_error(raw.delete(f"{path}/{third.id}"), 404, "not_found_error", third.id)
    assert_error(raw.get(f"{path}/skillver_nope"), 404, "not_found_error", "skillver_nope")
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [second.id]


def test_a_taken_name_is_a_409_with_skill_name_taken(
    client: anthropic.Anthropic, other_client: anthropic.Anthropic, raw: httpx2.Client
) -> None:
    skill = make_skill(client, "shared-name")
    with pytest.raises(BetaSkillNameTakenError) as caught:
        client.beta.skills.create(files=skill_files("shared-name", top="elsewhere"))
    assert caught.value.status_code == 409 and caught.value.error_code == "skill_name_taken"
    assert caught.value.details.skill_name == "shared-name"
    response = raw.post("/v1/skills", files=[("files[]", ("shared-name/SKILL.md", skill_md("shared-name")))])
    assert response.headers["x-should-retry"] == "false"
    assert [s.id for s in client.beta.skills.list()] == [skill.id]
    assert other_client.beta.skills.create(files=skill_files("shared-name")).id != skill.id  # per workspace


def test_a_new_version_keeps_the_skill_name(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    skill = make_skill(client)
    parts = [("files[]", ("other-name/SKILL.md", skill_md("other-name")))]
    assert_error(raw.post(f"/v1/skills/{skill.id}/versions", files=parts), 400, "invalid_request_error", "my-skill")
    parts = [("files[]", ("my-skill/SKILL.md", skill_md("my-skill")))]
    assert_error(raw.post("/v1/skills/skill_nope/versions", files=parts), 404, "not_found_error", "skill_nope")
    response = raw.post(f"/v1/skills/{skill.id}/versions", files=parts, data={"display_name": "x"})
    assert_error(response, 400, "invalid_request_error", "display_name: unknown field")
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [skill.latest_version_id]


def test_frontmatter_forms_and_fallbacks(client: anthropic.Anthropic) -> None:
    text = (
        "\ufeff---\r\nname: 'quoted-name'\r\nlicense: MIT\r\nmetadata:\r\n  owner: me\r\n"
        "description: >\r\n  Folded over\r\n  two lines.\r\n---\r\nBody\r\n"
    )
    skill = client.beta.skills.create(files=[("quoted/SKILL.md", text.encode())])
    version = client.beta.skills.versions.retrieve("latest", skill_id=skill.id)
    assert (version.name, version.description) == ("quoted-name", "Folded over two lines.")
    # Without a frontmatter name, the directory names the skill.
    nameless = client.beta.skills.create(files=[("from-dir/SKILL.md", skill_md(None))])
    assert nameless.display_name == "from-dir"
    # Files sent without a directory (as the SDK names a bare pathlib.Path) are the skill's directory.
    flat = client.beta.skills.create(files=[("SKILL.md", skill_md("flat-skill")), ("notes.md", b"n")])
    content = client.beta.skills.versions.download("latest", skill_id=flat.id).read()
    assert sorted(unzip(content)) == ["flat-skill/SKILL.md", "flat-skill/notes.md"]


def _parts(*files: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files[]", file) for file in files]


GOOD = ("s/SKILL.md", skill_md("good-name"))
BAD_UPLOADS: list[tuple[Any, dict[str, str], str]] = [
    ([], {"display_name": "x"}, "files"),
    (_parts(("s/notes.md", b"x")), {}, "SKILL.md"),
    (_parts(GOOD, ("t/notes.md", b"x")), {}, "files[1]"),
    (_parts(GOOD, ("notes.md", b"x")), {}, "files[1]"),
    (_parts(GOOD, ("s/../x.md", b"x")), {}, "files[1]"),
    (_parts(GOOD, ("/etc/passwd", b"x")), {}, "files[1]"),
    (_parts(GOOD, ("s//x.md", b"x")), {}, "files[1]"),
    (_parts(GOOD, ("s/SKILL.md", b"x")), {}, "files[1]"),
    (_parts(GOOD, ("s/a", b"x"), ("s/a/b", b"x")), {}, "files[2]"),
    (_parts(("s/SKILL.md", b"\xff\xfe---")), {}, "UTF-8"),
    (_parts(("s/SKILL.md", b"no frontmatter")), {}, "frontmatter"),
    (_parts(("s/SKILL.md", b"---\nname: a\ndescription: b\n")), {}, "closing"),
    (_parts(("s/SKILL.md", skill_md("Not_A_Slug"))), {}, "SKILL.md: frontmatter name"),
    (_parts(("s/SKILL.md", skill_md("a--b"))), {}, "kebab-case"),
    (_parts(("s/SKILL.md", skill_md("x" * 65))), {}, "kebab-case"),
    (_parts(("s/SKILL.md", skill_md("claude-helper"))), {}, "reserved"),
    (_parts(("Bad Dir/SKILL.md", skill_md(None))), {}, "top-level directory"),
    (_parts(("SKILL.md", skill_md(None))), {}, "needs a name"),
    (_parts(("s/SKILL.md", skill_md("ok", description=" "))), {}, "description"),
    (_parts(("s/SKILL.md", skill_md("ok", description="d" * 1025))), {}, "description"),
    (_parts(("s/SKILL.md", skill_md("ok", description="use <tag>"))), {}, "XML"),
    (_parts(("s/SKILL.md", b"---\nname: 'ok\ndescription: d\n---\n")), {}, "quote"),
    (_parts(GOOD), {"display_name": "x" * 256}, "display_name"),
    (_parts(GOOD), {"display_name": "two\nlines"}, "display_name"),
    (_parts(GOOD), {"display_name": "   "}, "display_name"),
    (_parts(GOOD), {"title": "x"}, "title"),
    (_parts(GOOD) + [("files[]", ("", b"x"))], {}, "files[1]"),
]


@pytest.mark.parametrize(("parts", "data", "mentions"), BAD_UPLOADS)
def test_bad_uploads_are_400s_naming_the_problem_and_keep_nothing(
    client: anthropic.Anthropic, raw: httpx2.Client, parts: Any, data: dict[str, str], mentions: str
) -> None:
    response = raw.post("/v1/skills", files=parts, data=data) if parts else raw.post("/v1/skills", data=data)
    assert_error(response, 400, "invalid_request_error", mentions)
    assert list(client.beta.skills.list()) == []


def test_bodies_that_are_not_uploads_are_refused(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    assert_error(raw.post("/v1/skills", json={"files": []}), 400, "invalid_request_error", "multipart/form-data")
    text_part = raw.post("/v1/skills", data={"files[]": "my-skill/SKILL.md"}, files=_parts(GOOD))
    assert_error(text_part, 400, "invalid_request_error", "files[")
    too_many = _parts(GOOD, *[(f"s/f{i}.txt", b"") for i in range(500)])
    assert_error(raw.post("/v1/skills", files=too_many), 400, "invalid_request_error", "at most 500")
    assert list(client.beta.skills.list()) == []


def test_uploads_over_the_size_limit_are_413_and_keep_nothing(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    """Test servers allow 256 KiB of files per skill (max_skill_bytes)."""
    big = _parts(GOOD, ("s/a.bin", b"x" * (128 * 1024)), ("s/b.bin", b"x" * (128 * 1024)))
    assert_error(raw.post("/v1/skills", files=big), 413, "request_too_large", "files")
    skill = make_skill(client, "good-name")
    assert_error(raw.post(f"/v1/skills/{skill.id}/versions", files=big), 413, "request_too_large", "files")
    assert [s.id for s in client.beta.skills.list()] == [skill.id]
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [skill.latest_version_id]
    fits = _parts(GOOD, ("s/a.bin", b"x" * (200 * 1024)))
    assert raw.post(f"/v1/skills/{skill.id}/versions", files=fits).status_code == 200


def test_list_pages_and_query_rules(client: anthropic.Anthropic, raw: httpx2.Client) -> None:
    made = [make_skill(client, f"skill-{i}").id for i in range(3)]
    page = client.beta.skills.list(limit=2)
    assert [s.id for s in page.data] == made[::-1][:2] and page.next_page
    rest = client.beta.skills.list(limit=2, page=page.next_page)
    assert [s.id for s in rest.data] == [made[0]] and rest.next_page is None
    assert [s.id for s in client.beta.skills.list(limit=1)] == made[::-1]  # the SDK follows next_page
    for params, mentions in [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"source": "plugin"}, "source"),
        ({"page": "garbage"}, "page"),
        ({"page": page.next_page, "source": "custom"}, "page"),
    ]:
        assert_error(raw.get("/v1/skills", params=params), 400, "invalid_request_error", mentions)
    assert_error(raw.get(f"/v1/skills/{made[0]}/versions", params={"limit": 1001}), 400, "invalid_request_error")
    versions = f"/v1/skills/{made[0]}/versions"
    assert_error(raw.get(versions, params={"page": page.next_page}), 400, "invalid_request_error", "page")


def test_other_workspaces_see_nothing(client: anthropic.Anthropic, other_client: anthropic.Anthropic) -> None:
    skill = make_skill(client)
    version = skill.latest_version_id
    calls = [
        lambda: other_client.beta.skills.retrieve(skill.id),
        lambda: other_client.beta.skills.delete(skill.id),
        lambda: other_client.beta.skills.versions.list(skill.id),
        lambda: other_client.beta.skills.versions.retrieve("latest", skill_id=skill.id),
        lambda: other_client.beta.skills.versions.download(version, skill_id=skill.id),
        lambda: other_client.beta.skills.versions.delete(version, skill_id=skill.id),
        lambda: other_client.beta.skills.versions.create(skill.id, files=skill_files()),
    ]
    for call in calls:
        with pytest.raises(anthropic.NotFoundError):
            call()
    assert list(other_client.beta.skills.list()) == []
    assert client.beta.skills.retrieve(skill.id) == skill
    assert [v.id for v in client.beta.skills.versions.list(skill.id)] == [version]


def test_agents_reference_custom_skills(
    client: anthropic.Anthropic, other_client: anthropic.Anthropic, raw: httpx2.Client
) -> None:
    skill = make_skill(client)
    pinned = skill.latest_version_id
    newer = client.beta.skills.versions.create(skill.id, files=skill_files(description="Newer."))
    agent = client.beta.agents.create(
        **AGENT,
        tools=READ_TOOLS,
        skills=[
            {"type": "custom", "skill_id": skill.id},
            {"type": "anthropic", "skill_id": "pdf"},
        ],
    )
    custom = agent.skills[0]
    assert custom.type == "custom" and custom.skill_id == skill.id and custom.version == "latest"
    updated = client.beta.agents.update(
        agent.id, version=agent.version, skills=[{"type": "custom", "skill_id": skill.id, "version": pinned}]
    )
    assert [(s.type, s.skill_id, s.version) for s in updated.skills] == [("custom", skill.id, pinned)]
    assert client.beta.agents.retrieve(agent.id).skills == updated.skills

    environment = client.beta.environments.create(name="skills-env")
    session = client.beta.sessions.create(
        environment_id=environment.id,
        agent={
            "type": "agent_with_overrides",
            "id": agent.id,
            "skills": [{"type": "custom", "skill_id": skill.id, "version": newer.id}],
        },
    )
    assert [(s.skill_id, s.version) for s in session.agent.skills] == [(skill.id, newer.id)]

    foreign = other_client.beta.skills.create(files=skill_files("foreign-skill"))
    base = {**AGENT, "tools": READ_TOOLS}
    cases = [
        ([{"type": "custom", "skill_id": "skill_nope"}], "skills[0].skill_id"),
        ([{"type": "custom", "skill_id": foreign.id}], "skills[0].skill_id"),
        (
            [{"type": "anthropic", "skill_id": "pdf"}, {"type": "custom", "skill_id": skill.id, "version": "v9"}],
            "[1].version",
        ),
        ([{"type": "custom", "skill_id": skill.id, "version": foreign.latest_version_id}], "skills[0].version"),
    ]
    for skills, mentions in cases:
        assert_error(raw.post("/v1/agents", json={**base, "skills": skills}), 404, "not_found_error", mentions)
        update = raw.post(f"/v1/agents/{agent.id}", json={"skills": skills})
        assert_error(update, 404, "not_found_error", mentions)
    blank = [{"type": "custom", "skill_id": skill.id, "version": " "}]
    assert_error(raw.post("/v1/agents", json={**base, "skills": blank}), 400, "invalid_request_error", "version")
    overrides = {"type": "agent_with_overrides", "id": agent.id, "skills": cases[0][0]}
    response = raw.post("/v1/sessions", json={"agent": overrides, "environment_id": environment.id})
    assert_error(response, 404, "not_found_error", "agent.skills[0].skill_id")
    assert [a.id for a in client.beta.agents.list()] == [agent.id]
    assert client.beta.agents.retrieve(agent.id).version == updated.version
    assert [s.id for s in client.beta.sessions.list()] == [session.id]

    # Deleting a skill leaves the agents that name it as they are (hosted runs then report skill_not_found).
    client.beta.skills.delete(skill.id)
    assert client.beta.agents.retrieve(agent.id).skills == updated.skills


def test_an_environment_key_reads_skill_versions_only(server: LiveServer, client: anthropic.Anthropic) -> None:
    skill = make_skill(client)
    environment = client.beta.environments.create(name="own-hardware", config={"type": "self_hosted"})
    with sdk(server, server.environment_key(environment.id)) as worker:
        version = worker.beta.skills.versions.retrieve("latest", skill_id=skill.id)  # as the SDK worker does
        assert version.id == skill.latest_version_id
        content = worker.beta.skills.versions.download(version.id, skill_id=skill.id).read()
        assert "my-skill/SKILL.md" in unzip(content)
        with pytest.raises(anthropic.PermissionDeniedError):
            worker.beta.skills.create(files=skill_files("worker-skill"))
        with pytest.raises(anthropic.PermissionDeniedError):
            worker.beta.skills.versions.delete(version.id, skill_id=skill.id)
        with pytest.raises(anthropic.PermissionDeniedError):
            worker.beta.skills.list()
