"""A session's files in its sandbox: attached files in, outputs out.

Before a tool runs in the sandbox, the uploads directory (``/mnt/session/uploads``, read-only
to the sandbox) is made to hold exactly the session's file resources: each at its mount
path, a hard link to (or copy of) the session's own copy. A manifest beside the session's
directories remembers what was placed, so a removed resource disappears too.

After a tool that can write has run, every regular file under ``/mnt/session/outputs`` that
is new or changed since it was last seen (size and modification time) is stored as a Files
API file scoped to the session (``GET /v1/files?scope_id=<session>``). The walk never
follows the agent's symlinks (:class:`~agenthost.sandbox.rooted.RootedFiles`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from pathlib import Path

from agenthost.engine.manifests import read_manifest, write_manifest
from agenthost.errors import PayloadTooLarge
from agenthost.ids import new_id
from agenthost.sandbox.base import Sandbox
from agenthost.schemas.common import JSON
from agenthost.schemas.resources import UPLOADS, uploads_relative
from agenthost.store.blobs import Blobs, link_or_copy
from agenthost.store.files import Files, Output

log = logging.getLogger("agenthost.engine")

OUTPUTS = "/mnt/session/outputs"
MAX_OUTPUTS = 1000
"""Files of one session's outputs directory kept at most; beyond, new paths are left on disk only."""
WRITING_TOOLS = frozenset({"bash", "write", "edit"})


def _place(uploads: Path, expected: dict[str, str], blobs: Blobs) -> None:
    """Make ``uploads`` hold exactly ``expected`` ({relative path: file id}), per the manifest beside it."""
    manifest_path = uploads.parent / "uploads.json"
    placed: dict[str, str] = read_manifest(manifest_path)
    for relative, file_id in placed.items():
        if expected.get(relative) != file_id:
            with contextlib.suppress(FileNotFoundError):
                (uploads / relative).unlink()
            _prune(uploads, (uploads / relative).parent)
    for relative, file_id in expected.items():
        target = uploads / relative
        if placed.get(relative) == file_id and target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        try:
            link_or_copy(blobs.path(file_id), target)
        except FileNotFoundError:
            log.warning("file %s of %s has no contents; not mounted", file_id, uploads.parent.name)
    write_manifest(manifest_path, expected)


def _prune(top: Path, directory: Path) -> None:
    """Remove empty directories from ``directory`` up to (not including) ``top``."""
    while directory != top and top in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _copy_out(blobs: Blobs, dir_fd: int, name: str, file_id: str, limit: int) -> int | None:
    """Store a walked output's bytes under ``file_id``; None when it is no longer a regular file or too large."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            return blobs.write(file_id, handle, limit)
        except PayloadTooLarge:
            return None


class SessionFiles:
    """Mounts one session's file resources and collects its outputs, for the run that holds it."""

    def __init__(self, files: Files, workspace_id: str, session_id: str, max_bytes: int):
        self.files = files
        self.workspace_id = workspace_id
        self.session_id = session_id
        self.max_bytes = max_bytes
        self._mounted: dict[str, str] | None = None
        self._seen: dict[str, tuple[int, int]] | None = None

    async def mount(self, sandbox: Sandbox, resources: list[JSON]) -> None:
        """Place the file resources in the sandbox's uploads directory (nothing when it has none)."""
        uploads = sandbox.files.host_dir(UPLOADS)
        if uploads is None:
            return
        expected = {uploads_relative(r["mount_path"]): r["file_id"] for r in resources if r["type"] == "file"}
        if expected == self._mounted:
            return
        await asyncio.to_thread(_place, uploads, expected, self.files.blobs)
        self._mounted = expected

    async def collect(self, sandbox: Sandbox) -> None:
        """Store new and changed files of the outputs directory as session files."""
        if sandbox.files.host_dir(OUTPUTS) is None:
            return
        if self._seen is None:
            self._seen = await self.files.outputs(self.session_id)
        stored = await asyncio.to_thread(self._scan, sandbox, dict(self._seen))
        for output, file_id in stored:
            await self.files.record_output(self.workspace_id, self.session_id, output, file_id)
            self._seen[output.path] = (output.size, output.mtime)

    def _scan(self, sandbox: Sandbox, seen: dict[str, tuple[int, int]]) -> list[tuple[Output, str]]:
        stored: list[tuple[Output, str]] = []
        count = len(seen)
        for display, info, dir_fd, name in sandbox.files.walk(OUTPUTS):
            relative = display[len(OUTPUTS) + 1 :]
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:  # a name that is not UTF-8 cannot be a file's name in the API
                continue
            if seen.get(relative) == (info.st_size, info.st_mtime_ns) or info.st_size > self.max_bytes:
                continue
            if relative not in seen:
                if count >= MAX_OUTPUTS:
                    continue
                count += 1
            file_id = new_id("file")
            size = _copy_out(self.files.blobs, dir_fd, name, file_id, self.max_bytes)
            if size is not None:
                stored.append((Output(relative, size, info.st_mtime_ns), file_id))
        return stored
