"""Skills and their versions (layer 1).

A skill is a row of ``skills``; each version a row of ``skill_versions`` plus one zip archive
in the files directory's ``skills`` folder, named by the version id. The archive's single
top-level directory is the skill's name, the layout the SDK's self-hosted worker unpacks. As
with files, the archive is written before the row that names it and deleted after the row is
gone; :meth:`Skills.purge` removes archives a crash left without a row.

The engine reads a version through :meth:`Skills.archive` (see its docstring).
"""

from __future__ import annotations

import asyncio
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from agenthost.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge, Unavailable
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us
from agenthost.schemas.skills import (
    LATEST,
    SKILL_FILE,
    Frontmatter,
    UploadPlan,
    plan_upload,
    read_skill_md,
    skill_json,
    version_json,
)
from agenthost.schemas.tools import CustomSkill
from agenthost.store.blobs import CHUNK, Blobs
from agenthost.store.db import Database
from agenthost.store.files import ORPHAN_GRACE_US
from agenthost.store.paging import Page, PageRequest, fetch_page, locked
from agenthost.store.tables import skill_versions, skills

Upload = list[tuple[str, BinaryIO]]
"""An upload's files: (the part's filename, i.e. the path, and its contents)."""


@dataclass(frozen=True)
class SkillArchive:
    """One skill version as the engine needs it: what to announce to the model and the files to mount.

    ``path`` is a zip whose single top-level directory is ``name`` (``name/SKILL.md``,
    ``name/scripts/...``); files that begin with ``#!`` are stored with mode 0755, others 0644.
    The archive never changes, but it is removed when its version or skill is deleted: open
    it promptly with :meth:`open` (an open handle keeps working) or use :meth:`read_bytes`.
    """

    skill_id: str
    version_id: str
    name: str
    description: str
    path: Path

    def open(self) -> BinaryIO:
        """The archive, open for reading (blocking; run it in a thread); 404 when the version was deleted since."""
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise NotFound(f"skill {self.skill_id} has no version {self.version_id} any more") from None

    def read_bytes(self) -> bytes:
        """The archive's bytes (blocking; run it in a thread); 404 when the version was deleted since."""
        with self.open() as handle:
            return handle.read()


def _zip_time(us: int) -> tuple[int, int, int, int, int, int]:
    moment = datetime.fromtimestamp(us / 1_000_000, UTC)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _pack(out: BinaryIO, name: str, plan: UploadPlan, sources: list[BinaryIO], limit: int, now: int) -> int:
    """Write the files as a zip under ``name/`` to ``out``; return their total size (413 past ``limit``)."""
    total = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, source in zip(plan.paths, sources, strict=True):
            source.seek(0)
            info = zipfile.ZipInfo(f"{name}/{path}", date_time=_zip_time(now))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so extractors read the mode from external_attr
            first = source.read(CHUNK)
            mode = 0o100755 if first.startswith(b"#!") else 0o100644
            info.external_attr = mode << 16
            with archive.open(info, "w") as target:
                chunk = first
                while chunk:
                    total += len(chunk)
                    if total > limit:
                        raise PayloadTooLarge(f"files: the skill's files add up to more than {limit} bytes")
                    target.write(chunk)
                    chunk = source.read(CHUNK)
    return total


def _read_skill_md(plan: UploadPlan, sources: list[BinaryIO], limit: int) -> Frontmatter:
    source = sources[plan.skill_md]
    source.seek(0)
    data = source.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"files: {SKILL_FILE} alone is larger than the limit of {limit} bytes")
    return read_skill_md(data, plan.top)


def _skill_row(conn: sa.Connection, workspace_id: str, skill_id: str, lock: bool = False) -> Any:
    query = sa.select(skills).where(skills.c.id == skill_id, skills.c.workspace_id == workspace_id)
    row = conn.execute(locked(query, "update" if lock else None, skills)).first()
    if row is None:
        raise NotFound(f"skill {skill_id!r} not found")
    return row


def _version_row(conn: sa.Connection, workspace_id: str, skill_id: str, version: str) -> Any:
    skill = _skill_row(conn, workspace_id, skill_id)
    version_id = skill.latest_version_id if version == LATEST else version
    query = sa.select(skill_versions).where(skill_versions.c.id == version_id, skill_versions.c.skill_id == skill_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"skill {skill_id} has no version {version!r}")
    return row


class Skills:
    """Custom skills of every workspace, and their archives."""

    def __init__(self, db: Database, files_dir: Path | None):
        self.db = db
        self._blobs = Blobs(files_dir / "skills") if files_dir is not None else None

    @property
    def blobs(self) -> Blobs:
        if self._blobs is None:
            raise Unavailable("skills: this process has no files directory")
        return self._blobs

    async def _store(self, version_id: str, files: Upload, limit: int, name: str | None) -> tuple[Frontmatter, int]:
        """Check an upload and write its archive; the frontmatter and the files' total size.

        ``name`` is the skill's name when adding a version: every version must declare the same one.
        """
        plan = plan_upload([filename for filename, _ in files])
        sources = [source for _, source in files]
        blobs = self.blobs

        def work() -> tuple[Frontmatter, int]:
            blobs.root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the files directory, private
            front = _read_skill_md(plan, sources, limit)
            if name is not None and front.name != name:
                raise InvalidRequest(
                    f"{SKILL_FILE}: the name {front.name!r} differs from this skill's name {name!r}; "
                    "every version of a skill has the same name"
                )
            now = now_us()
            size = blobs.write_with(version_id, lambda out: _pack(out, front.name, plan, sources, limit, now))
            return front, size

        return await asyncio.to_thread(work)

    async def _forget(self, version_ids: list[str]) -> None:
        if version_ids:
            await asyncio.to_thread(self.blobs.delete, version_ids)

    # -- skills ----------------------------------------------------------------------------------

    async def create(self, workspace_id: str, files: Upload, *, display_name: str | None, limit: int) -> JSON:
        """A new skill with its first version; 409 ``skill_name_taken`` when the workspace has the name."""
        skill_id, version_id = new_id("skill"), new_id("skillver")
        front, size = await self._store(version_id, files, limit, None)
        now = now_us()
        row = {
            "id": skill_id,
            "workspace_id": workspace_id,
            "name": front.name,
            "display_name": display_name or front.name,
            "latest_version_id": version_id,
            "created_at": now,
            "updated_at": now,
        }

        def write(conn: sa.Connection) -> None:
            query = sa.select(skills.c.id).where(skills.c.workspace_id == workspace_id, skills.c.name == front.name)
            taken = conn.execute(query).scalar()
            if taken is not None:
                raise _name_taken(front.name, taken)
            conn.execute(skills.insert().values(**row))
            conn.execute(
                skill_versions.insert().values(
                    id=version_id,
                    skill_id=skill_id,
                    name=front.name,
                    description=front.description,
                    file_count=len(files),
                    size_bytes=size,
                    created_at=now,
                )
            )

        try:
            await self.db.run_write(write)
        except IntegrityError:  # the same name, created by a concurrent request
            await self._forget([version_id])
            raise _name_taken(front.name, None) from None
        except BaseException:
            await self._forget([version_id])
            raise
        return skill_json(SimpleNamespace(**row))

    async def get(self, workspace_id: str, skill_id: str) -> JSON:
        return await self.db.run_read(lambda conn: skill_json(_skill_row(conn, workspace_id, skill_id)))

    async def list(self, workspace_id: str, page: PageRequest, *, source: str | None) -> Page:
        """Newest first. Anthropic's own skills are not served here, so ``source=anthropic`` lists none."""
        if source == "anthropic":
            return Page()
        query = sa.select(skills).where(skills.c.workspace_id == workspace_id)
        return await self.db.run_read(
            lambda conn: fetch_page(conn, query, skills.c.id, page, skill_json, lambda r: r.id)
        )

    async def delete(self, workspace_id: str, skill_id: str) -> None:
        """Delete a skill with all its versions. Agents that name it keep the reference."""

        def write(conn: sa.Connection) -> list[str]:
            _skill_row(conn, workspace_id, skill_id, lock=True)
            gone = sa.delete(skill_versions).where(skill_versions.c.skill_id == skill_id).returning(skill_versions.c.id)
            version_ids = list(conn.execute(gone).scalars())
            conn.execute(sa.delete(skills).where(skills.c.id == skill_id))
            return version_ids

        await self._forget(await self.db.run_write(write))

    # -- versions --------------------------------------------------------------------------------

    async def create_version(self, workspace_id: str, skill_id: str, files: Upload, *, limit: int) -> JSON:
        """A new version, which becomes the skill's latest; its SKILL.md must keep the skill's name."""
        name = await self.db.run_read(lambda conn: _skill_row(conn, workspace_id, skill_id).name)
        version_id = new_id("skillver")
        front, size = await self._store(version_id, files, limit, name)
        now = now_us()
        values = {
            "id": version_id,
            "skill_id": skill_id,
            "name": front.name,
            "description": front.description,
            "file_count": len(files),
            "size_bytes": size,
            "created_at": now,
        }

        def write(conn: sa.Connection) -> None:
            _skill_row(conn, workspace_id, skill_id, lock=True)  # 404 if the skill was deleted meanwhile
            conn.execute(skill_versions.insert().values(**values))
            conn.execute(
                skills.update().where(skills.c.id == skill_id).values(latest_version_id=version_id, updated_at=now)
            )

        try:
            await self.db.run_write(write)
        except BaseException:
            await self._forget([version_id])
            raise
        return version_json(SimpleNamespace(**values))

    async def versions(self, workspace_id: str, skill_id: str, page: PageRequest) -> Page:
        """A skill's versions, newest first."""
        query = sa.select(skill_versions).where(skill_versions.c.skill_id == skill_id)

        def read(conn: sa.Connection) -> Page:
            _skill_row(conn, workspace_id, skill_id)
            return fetch_page(conn, query, skill_versions.c.id, page, version_json, lambda r: r.id)

        return await self.db.run_read(read)

    async def get_version(self, workspace_id: str, skill_id: str, version: str) -> JSON:
        """One version, by id or as ``latest``."""
        return await self.db.run_read(lambda conn: version_json(_version_row(conn, workspace_id, skill_id, version)))

    async def delete_version(self, workspace_id: str, skill_id: str, version_id: str) -> None:
        """Delete a version (by id); the newest remaining one becomes latest. The last one cannot go (409)."""
        if version_id == LATEST:
            raise InvalidRequest("version: name the version id to delete; `latest` is only an alias for reading")

        def write(conn: sa.Connection) -> None:
            skill = _skill_row(conn, workspace_id, skill_id, lock=True)
            mine = skill_versions.c.skill_id == skill_id
            found = conn.execute(sa.select(skill_versions.c.id).where(mine, skill_versions.c.id == version_id)).first()
            if found is None:
                raise NotFound(f"skill {skill_id} has no version {version_id!r}")
            remaining = sa.select(skill_versions.c.id).where(mine, skill_versions.c.id != version_id)
            newest = conn.execute(
                remaining.order_by(skill_versions.c.created_at.desc(), skill_versions.c.id.desc()).limit(1)
            ).scalar()
            if newest is None:
                raise Conflict(
                    f"version: {version_id} is the only version of skill {skill_id}, and a skill always has one; "
                    "delete the skill instead"
                )
            conn.execute(sa.delete(skill_versions).where(skill_versions.c.id == version_id))
            if skill.latest_version_id == version_id:
                conn.execute(
                    skills.update().where(skills.c.id == skill_id).values(latest_version_id=newest, updated_at=now_us())
                )

        await self.db.run_write(write)
        await self._forget([version_id])

    # -- for agents and the engine ---------------------------------------------------------------

    async def archive(self, workspace_id: str, skill_id: str, version: str = LATEST) -> SkillArchive:
        """The archive, name and description of a skill version, by version id or ``latest``.

        For the engine, to make an agent's custom skills available in a sandbox: extract ``path``
        (or :meth:`SkillArchive.read_bytes`) and strip the top directory, or keep it, since it is
        already the skill's name. 404 when the skill or version is unknown in this workspace; the
        download route serves the same archive.
        """
        row = await self.db.run_read(lambda conn: _version_row(conn, workspace_id, skill_id, version))
        return SkillArchive(
            skill_id=skill_id,
            version_id=row.id,
            name=row.name,
            description=row.description,
            path=self.blobs.path(row.id),
        )

    async def check_references(self, workspace_id: str, references: Sequence[Any], field: str) -> None:
        """404 naming the field unless each custom skill reference names a skill (and version) of the workspace.

        ``references`` are the request's skill entries (``schemas.tools.Skill``); Anthropic ones are
        checked by ``resolve_skills``.
        """
        wanted = [(i, ref) for i, ref in enumerate(references) if isinstance(ref, CustomSkill)]
        if not wanted:
            return

        def read(conn: sa.Connection) -> None:
            for index, ref in wanted:
                try:
                    _skill_row(conn, workspace_id, ref.skill_id)
                except NotFound as exc:
                    raise NotFound(f"{field}[{index}].skill_id: {exc.message}") from None
                if ref.version is not None and ref.version != LATEST:
                    try:
                        _version_row(conn, workspace_id, ref.skill_id, ref.version)
                    except NotFound as exc:
                        raise NotFound(f"{field}[{index}].version: {exc.message}") from None

        await self.db.run_read(read)

    # -- housekeeping ----------------------------------------------------------------------------

    async def purge(self) -> int:
        """Remove archives that no version row names (a crash between the two); return how many."""
        if self._blobs is None:
            return 0
        stored = await asyncio.to_thread(self._blobs.stored_before, now_us() - ORPHAN_GRACE_US)
        known: set[str] = set()
        for start in range(0, len(stored), 500):
            query = sa.select(skill_versions.c.id).where(skill_versions.c.id.in_(stored[start : start + 500]))
            known |= set(await self.db.run_read(lambda conn, q=query: list(conn.execute(q).scalars())))
        orphans = [version_id for version_id in stored if version_id not in known]
        await self._forget(orphans)
        return len(orphans)


def _name_taken(name: str, skill_id: str | None) -> Conflict:
    where = f" ({skill_id})" if skill_id else ""
    return Conflict(
        f"{SKILL_FILE}: a skill named {name!r} already exists in this workspace{where}; "
        "add a version to it or choose another name",
        error_code="skill_name_taken",
        details={"skill_name": name},
    )
