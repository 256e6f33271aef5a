"""File contents on disk (layer 1): one file per Files API id, written once, then only read.

The database holds each file's metadata (``store/files.py``); this directory holds the
bytes, named by id. Skill version archives live the same way in its ``skills`` folder
(``store/skills.py``). A file is written under a temporary name and renamed into place, so a
reader never sees half a file. A session's copy of an upload shares the upload's bytes
through a hard link where the filesystem allows it. Every method blocks: callers run them
in a thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from agenthost.errors import PayloadTooLarge

CHUNK = 1 << 20
T = TypeVar("T")


class Blobs:
    """The directory of file contents."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, file_id: str) -> Path:
        if "/" in file_id or file_id.startswith("."):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.root / file_id

    def write(self, file_id: str, source: BinaryIO, limit: int) -> int:
        """Copy ``source`` to the file's place and return its size; PayloadTooLarge past ``limit`` bytes."""

        def copy(out: BinaryIO) -> int:
            size = 0
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"file: larger than the limit of {limit} bytes")
                out.write(chunk)
            return size

        return self.write_with(file_id, copy)

    def write_with(self, file_id: str, fill: Callable[[BinaryIO], T]) -> T:
        """Let ``fill`` write the file's contents, then put them in place whole; nothing stays if it raises."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        target = self.path(file_id)
        partial = target.with_name(f".{file_id}.partial")
        try:
            with open(partial, "wb") as out:
                result = fill(out)
                os.fchmod(out.fileno(), 0o644)  # readable through a sandbox's uploads mount; the root dir is 0700
            partial.replace(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return result

    def copy(self, source_id: str, target_id: str) -> None:
        """Give ``target_id`` the bytes of ``source_id`` (a hard link: contents never change)."""
        link_or_copy(self.path(source_id), self.path(target_id))

    def open(self, file_id: str) -> BinaryIO:
        return open(self.path(file_id), "rb")

    def delete(self, file_ids: list[str]) -> None:
        for file_id in file_ids:
            target = self.path(file_id)
            for path in (target, target.with_name(f".{file_id}.partial")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def stored_before(self, cutoff_us: int) -> list[str]:
        """Ids with contents here written before ``cutoff_us`` (for removing what a crash left behind)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue  # a folder of other contents (skills/), not a file id
                if entry.stat(follow_symlinks=False).st_mtime_ns // 1000 < cutoff_us:
                    found.append(entry.name.removeprefix(".").removesuffix(".partial"))
            except FileNotFoundError:
                continue
        return found


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source``, or a copy of it across filesystems (never half a file)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, partial)
        partial.chmod(0o644)
        partial.replace(target)
