"""The Files API's records (layer 1).

A file is a row here and its bytes in :class:`~agenthost.store.blobs.Blobs`. Bytes are
written before the row that names them and deleted after the row is gone, so a row never
names missing bytes; what a crash leaves is bytes without a row, which :meth:`Files.purge`
removes. Three kinds share the table: uploads, a session's copies of the uploads attached
to it, and the files a session wrote to ``/mnt/session/outputs``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import sqlalchemy as sa

from agenthost.errors import InDoubt, InvalidRequest, NotFound, Unavailable
from agenthost.ids import new_id
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.schemas.files import file_json, guess_mime
from agenthost.store.blobs import Blobs
from agenthost.store.db import Database
from agenthost.store.paging import Page, PageRequest, fetch_page
from agenthost.store.tables import files

ORPHAN_GRACE_US = 15 * 60 * 1_000_000
"""Bytes without a row are removed once this old: younger ones may be an upload whose row is on its way."""


@dataclass(frozen=True)
class Output:
    """A regular file found under a session's outputs directory."""

    path: str  # relative to /mnt/session/outputs
    size: int
    mtime: int  # nanoseconds


def _visible(workspace_id: str, now: int) -> sa.ColumnElement[bool]:
    return sa.and_(files.c.workspace_id == workspace_id, sa.or_(files.c.expires_at.is_(None), files.c.expires_at > now))


def file_row(conn: sa.Connection, workspace_id: str, file_id: str, now: int) -> Any:
    """A file's row; 404 when unknown here, 404 ``file_expired`` once it expired."""
    row = conn.execute(sa.select(files).where(files.c.id == file_id, files.c.workspace_id == workspace_id)).first()
    if row is None:
        raise NotFound(f"file {file_id!r} not found")
    if row.expires_at is not None and row.expires_at <= now:
        raise NotFound(f"file {file_id} expired at {ts(row.expires_at)}", error_code="file_expired")
    return row


class Files:
    """File records of every workspace, and their bytes."""

    def __init__(self, db: Database, root: Path | None):
        self.db = db
        self._blobs = Blobs(root) if root is not None else None

    @property
    def blobs(self) -> Blobs:
        if self._blobs is None:
            raise Unavailable("files: this process has no files directory")
        return self._blobs

    # -- the API ---------------------------------------------------------------------------------

    async def upload(
        self, workspace_id: str, source: BinaryIO, *, filename: str, mime_type: str, limit: int, expires_in: int | None
    ) -> JSON:
        file_id, now = new_id("file"), now_us()
        size = await asyncio.to_thread(self.blobs.write, file_id, source, limit)
        values = {
            "id": file_id,
            "workspace_id": workspace_id,
            "kind": "upload",
            "filename": filename,
            "mime_type": mime_type,
            "size_bytes": size,
            "downloadable": False,
            "session_id": None,
            "path": None,
            "source_mtime": None,
            "created_at": now,
            "expires_at": None if expires_in is None else now + expires_in * 1_000_000,
        }
        try:
            await self.db.run_write(lambda conn: conn.execute(files.insert().values(**values)))
        except InDoubt:  # the row may exist: keep the bytes; the purge removes bytes without a row
            raise
        except BaseException:
            await asyncio.to_thread(self.blobs.delete, [file_id])
            raise
        return file_json(SimpleNamespace(**values))

    async def get(self, workspace_id: str, file_id: str) -> JSON:
        now = now_us()
        return await self.db.run_read(lambda conn: file_json(file_row(conn, workspace_id, file_id, now)))

    async def content(self, workspace_id: str, file_id: str) -> tuple[Path, JSON]:
        """Where a downloadable file's bytes are, and its metadata; 400 ``file_not_downloadable`` otherwise."""
        now = now_us()
        row = await self.db.run_read(lambda conn: file_row(conn, workspace_id, file_id, now))
        if not row.downloadable:
            raise InvalidRequest(
                f"file {file_id} was uploaded and cannot be downloaded; only files a session wrote to "
                "/mnt/session/outputs can",
                error_code="file_not_downloadable",
            )
        return self.blobs.path(file_id), file_json(row)

    async def list(self, workspace_id: str, page: PageRequest, *, scope_id: str | None) -> Page:
        now = now_us()
        query = sa.select(files).where(_visible(workspace_id, now))
        if scope_id is None:
            query = query.where(files.c.kind != "copy")
        else:
            query = query.where(files.c.session_id == scope_id, files.c.kind == "output")
        return await self.db.run_read(lambda conn: fetch_page(conn, query, files.c.id, page, file_json, lambda r: r.id))

    async def by_ids(self, workspace_id: str, ids: list[str]) -> list[JSON]:
        """The visible files among ``ids``, newest first (unknown ids are left out)."""
        now = now_us()
        query = sa.select(files).where(_visible(workspace_id, now), files.c.id.in_(ids)).order_by(files.c.id.desc())
        return await self.db.run_read(lambda conn: [file_json(row) for row in conn.execute(query)])

    async def delete(self, workspace_id: str, file_id: str) -> None:
        def write(conn: sa.Connection) -> None:
            row = file_row(conn, workspace_id, file_id, now_us())
            if row.kind == "copy":
                raise InvalidRequest(
                    f"file {file_id} is session {row.session_id}'s copy of an attached file; remove that "
                    "resource from the session instead"
                )
            conn.execute(files.delete().where(files.c.id == file_id))

        await self.db.run_write(write)
        await asyncio.to_thread(self.blobs.delete, [file_id])

    # -- sessions --------------------------------------------------------------------------------

    async def copy_for_session(self, workspace_id: str, sources: dict[str, str]) -> dict[str, tuple[str, str]]:
        """Copy the bytes of uploads for a session: {field: upload id} -> {field: (copy id, upload id)}.

        A missing or expired upload is a 404 naming its field. Only the bytes are copied: the caller's
        transaction inserts the rows with :func:`insert_copies`, which checks the uploads again; when
        that fails, :meth:`forget` removes the bytes.
        """
        now = now_us()

        def read(conn: sa.Connection) -> None:
            for field, file_id in sources.items():
                try:
                    row = file_row(conn, workspace_id, file_id, now)
                except NotFound as exc:
                    raise NotFound(f"{field}: {exc.message}", error_code=exc.error_code) from None
                if row.kind == "copy":
                    raise InvalidRequest(f"{field}: file {file_id} is a session's copy; attach the upload instead")

        await self.db.run_read(read)
        copies = {field: (new_id("file"), file_id) for field, file_id in sources.items()}

        def link() -> None:
            for target, source in copies.values():
                self.blobs.copy(source, target)

        try:
            await asyncio.to_thread(link)
        except OSError:
            await self.forget([copy_id for copy_id, _ in copies.values()])
            raise
        return copies

    async def forget(self, file_ids: list[str]) -> None:
        """Remove bytes whose rows are gone (or were never written)."""
        if file_ids:
            await asyncio.to_thread(self.blobs.delete, file_ids)

    async def outputs(self, session_id: str) -> dict[str, tuple[int, int]]:
        """The outputs kept for a session: {relative path: (size, mtime)}."""
        query = sa.select(files.c.path, files.c.size_bytes, files.c.source_mtime).where(
            files.c.session_id == session_id, files.c.kind == "output"
        )
        rows = await self.db.run_read(lambda conn: list(conn.execute(query)))
        return {row.path: (row.size_bytes, row.source_mtime) for row in rows}

    async def record_output(self, workspace_id: str, session_id: str, output: Output, file_id: str) -> None:
        """Record an output whose bytes are stored under ``file_id``; it replaces the path's previous file."""
        name = output.path.rsplit("/", 1)[-1]

        def record(conn: sa.Connection) -> list[str]:
            old = list(
                conn.execute(
                    sa.delete(files)
                    .where(files.c.session_id == session_id, files.c.kind == "output", files.c.path == output.path)
                    .returning(files.c.id)
                ).scalars()
            )
            conn.execute(
                files.insert().values(
                    id=file_id,
                    workspace_id=workspace_id,
                    kind="output",
                    filename=name,
                    mime_type=guess_mime(name),
                    size_bytes=output.size,
                    downloadable=True,
                    session_id=session_id,
                    path=output.path,
                    source_mtime=output.mtime,
                    created_at=now_us(),
                    expires_at=None,
                )
            )
            return old

        try:
            replaced = await self.db.run_write(record)
        except BaseException:
            await self.forget([file_id])
            raise
        await self.forget(replaced)

    # -- housekeeping ----------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete expired files, and bytes that no row names (a crash between the two); return how many."""
        now = now_us()

        def expire(conn: sa.Connection) -> list[str]:
            gone = sa.delete(files).where(files.c.expires_at <= now).returning(files.c.id)
            return list(conn.execute(gone).scalars())

        expired = await self.db.run_write(expire)
        await self.forget(expired)
        stored = await asyncio.to_thread(self.blobs.stored_before, now - ORPHAN_GRACE_US)
        if not stored:
            return len(expired)
        known: set[str] = set()
        for start in range(0, len(stored), 500):
            chunk = stored[start : start + 500]
            query = sa.select(files.c.id).where(files.c.id.in_(chunk))
            known |= set(await self.db.run_read(lambda conn, q=query: list(conn.execute(q).scalars())))
        orphans = [file_id for file_id in stored if file_id not in known]
        await self.forget(orphans)
        return len(expired) + len(orphans)


def insert_copies(
    conn: sa.Connection, workspace_id: str, session_id: str, copies: dict[str, tuple[str, str]], now: int
) -> None:
    """Insert a session's copy rows in the caller's transaction (see :meth:`Files.copy_for_session`)."""
    for copy_id, source_id in copies.values():
        source = file_row(conn, workspace_id, source_id, now)
        conn.execute(
            files.insert().values(
                id=copy_id,
                workspace_id=workspace_id,
                kind="copy",
                filename=source.filename,
                mime_type=source.mime_type,
                size_bytes=source.size_bytes,
                downloadable=False,
                session_id=session_id,
                path=None,
                source_mtime=None,
                created_at=now,
                expires_at=None,
            )
        )


def delete_session_files(conn: sa.Connection, session_id: str) -> list[str]:
    """Delete a session's copies and outputs in the caller's transaction; the ids whose bytes to remove."""
    return list(conn.execute(sa.delete(files).where(files.c.session_id == session_id).returning(files.c.id)).scalars())


def delete_copy(conn: sa.Connection, session_id: str, file_id: str) -> None:
    conn.execute(sa.delete(files).where(files.c.id == file_id, files.c.session_id == session_id))
