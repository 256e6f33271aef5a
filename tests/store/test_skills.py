"""The skills repository as the engine uses it (``Skills.archive``), and the SKILL.md and path rules beneath it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

from agenthost.errors import InvalidRequest, NotFound
from agenthost.schemas.skills import parse_frontmatter, plan_upload
from agenthost.store.sql import Store
from tests.conftest import run_async

SKILL_MD = b"---\nname: report-writer\ndescription: Writes reports.\n---\nRead me first.\n"


def _upload(*files: tuple[str, bytes]) -> list[tuple[str, BinaryIO]]:
    return [(name, io.BytesIO(data)) for name, data in files]


def test_archive_gives_the_engine_name_description_and_files(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'skills.db'}", files_dir=tmp_path / "files")
        try:
            await store.open()
            skill = await store.skills.create(
                "ws", _upload(("report-writer/SKILL.md", SKILL_MD)), display_name=None, limit=1 << 20
            )
            later = SKILL_MD.replace(b"Writes reports.", b"Writes better reports.")
            second = await store.skills.create_version(
                "ws",
                skill["id"],
                _upload(("report-writer/SKILL.md", later), ("report-writer/x.sh", b"#!")),
                limit=1 << 20,
            )
            latest = await store.skills.archive("ws", skill["id"])
            assert (latest.version_id, latest.name, latest.description) == (
                second["id"],
                "report-writer",
                "Writes better reports.",
            )
            with zipfile.ZipFile(latest.path) as archive:
                assert archive.namelist() == ["report-writer/SKILL.md", "report-writer/x.sh"]
            first = await store.skills.archive("ws", skill["id"], skill["latest_version_id"])
            assert first.description == "Writes reports."
            with zipfile.ZipFile(io.BytesIO(first.read_bytes())) as archive:
                assert archive.read("report-writer/SKILL.md") == SKILL_MD
            assert await store.skills.purge() == 0  # archives with rows stay
            assert latest.path.exists() and latest.path.parent == tmp_path / "files" / "skills"
            assert await store.files.purge() == 0  # the Files API's purge leaves the skills folder alone
            assert latest.path.exists()
            for workspace, skill_id, version in [("other", skill["id"], "latest"), ("ws", skill["id"], "nope")]:
                with pytest.raises(NotFound):
                    await store.skills.archive(workspace, skill_id, version)
            await store.skills.delete("ws", skill["id"])
            assert not latest.path.exists() and not first.path.exists()
            with pytest.raises(NotFound):
                first.read_bytes()
        finally:
            await store.close()

    run_async(scenario())


def test_frontmatter_reads_the_yaml_forms_skills_use() -> None:
    text = (
        "---\n"
        "# a comment\n"
        'name: "my-skill"  \n'
        "description: |\n"
        "  First line.\n"
        "  Second line.\n"
        "allowed-tools:\n"
        "  - Read\n"
        "metadata:\n"
        "  version: 2\n"
        "plain: goes on\n"
        "  over lines # and a comment\n"
        "---\n"
        "name: not-frontmatter\n"
    )
    assert parse_frontmatter(text) == {
        "name": "my-skill",
        "description": "First line.\nSecond line.",
        "plain": "goes on over lines",
    }
    assert parse_frontmatter("---\ndescription: >-\n  a\n  b\n\n  c\n---\n")["description"] == "a b\nc"
    assert parse_frontmatter("---\nname: 'it''s'\n---")["name"] == "it's"


@pytest.mark.parametrize(
    ("names", "mentions"),
    [
        (["s/SKILL.md", "s/a\x01b"], "control characters"),
        (["s/SKILL.md", "C:/x"], "absolute"),
        (["s/SKILL.md", "s/" + "x" * 256], "longer than"),
        (["s/SKILL.md", "s/./x"], "'.'"),
    ],
)
def test_paths_that_could_escape_or_confuse_are_refused(names: list[str], mentions: str) -> None:
    with pytest.raises(InvalidRequest, match=mentions):
        plan_upload(names)


def test_backslashes_are_path_separators() -> None:
    plan = plan_upload(["s\\SKILL.md", "s\\scripts\\run.py"])
    assert (plan.top, plan.paths, plan.skill_md) == ("s", ["SKILL.md", "scripts/run.py"], 0)
