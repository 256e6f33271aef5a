"""The agent's skills in its sandbox: ``/mnt/skills/<name>/``, read-only, and announced.

When a run starts, the agent's custom skill references are resolved (``latest`` to the newest
version). The system prompt gets each skill's name and description and where its
``SKILL.md`` is; the model reads the rest when a task calls for it. Before the first tool call
in the sandbox, each skill version's archive is unpacked into the session's skills directory,
once per version (a manifest beside the directory remembers which version is there).

Anthropic's own skills (``xlsx``, ``docx``, ``pptx``, ``pdf``) are not served by agenthost, so
they are neither mounted nor announced.
"""

from __future__ import annotations

import logging
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from agenthost.engine.manifests import read_manifest, write_manifest
from agenthost.errors import AgentHostError
from agenthost.schemas.common import JSON
from agenthost.store.skills import SkillArchive, Skills

log = logging.getLogger("agenthost.engine")
SKILLS = "/mnt/skills"


async def resolve(skills: Skills | None, workspace_id: str, agent: JSON) -> list[SkillArchive]:
    """The agent's custom skills as versions to mount; a skill deleted since is left out (and logged)."""
    if skills is None:
        return []
    found: list[SkillArchive] = []
    for reference in agent.get("skills", []):
        if reference.get("type") != "custom":
            continue
        try:
            version = reference.get("version") or "latest"
            found.append(await skills.archive(workspace_id, reference["skill_id"], version))
        except AgentHostError as exc:
            log.warning("skill %s of the agent is not available: %s", reference["skill_id"], exc.message)
    return found


def skills_prompt(archives: list[SkillArchive]) -> str | None:
    """The system prompt's list of skills."""
    if not archives:
        return None
    lines = [
        "Skills are folders of instructions, scripts and resources in your sandbox. When a task matches a "
        "skill's description, read its SKILL.md first and follow it.",
    ]
    lines += [f"- {a.name} ({SKILLS}/{a.name}/SKILL.md): {a.description}" for a in archives]
    return "\n".join(lines)


def place(directory: Path, archives: list[SkillArchive]) -> None:
    """Make ``directory`` hold exactly these skill versions, unpacking only what changed (blocking)."""
    manifest_path = directory.parent / "skills.json"
    placed: dict[str, str] = read_manifest(manifest_path)
    wanted = {archive.name: archive for archive in archives}
    for name in list(placed):
        if name not in wanted:
            shutil.rmtree(directory / name, ignore_errors=True)
            del placed[name]
    for name, archive in wanted.items():
        if placed.get(name) == archive.version_id and (directory / name).is_dir():
            continue
        try:
            _unpack(archive, directory)
        except (OSError, zipfile.BadZipFile, AgentHostError, ValueError) as exc:
            log.warning("skill %s could not be unpacked: %s", name, exc)
            continue
        placed[name] = archive.version_id
    write_manifest(manifest_path, placed)


def _unpack(archive: SkillArchive, directory: Path) -> None:
    """Unpack one version beside its place, then swap it in (a reader never sees half a skill)."""
    staging = directory / f".{archive.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o755)
    with archive.open() as handle, zipfile.ZipFile(handle) as bundle:
        for entry in bundle.infolist():
            relative = PurePosixPath(entry.filename)
            parts = relative.parts
            if relative.is_absolute() or ".." in parts or not parts or parts[0] != archive.name:
                raise ValueError(f"unexpected entry {entry.filename!r} in the archive of {archive.name}")
            target = staging.joinpath(*parts[1:]) if len(parts) > 1 else staging
            if entry.is_dir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with bundle.open(entry) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            executable = (entry.external_attr >> 16) & stat.S_IXUSR
            target.chmod(0o755 if executable else 0o644)
    final, old = directory / archive.name, directory / f".{archive.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
