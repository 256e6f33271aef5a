"""Where a session's files live on the host (layer 1).

``<root>/<session_id>/`` holds ``workspace/`` (``/workspace``), ``outputs/``
(``/mnt/session/outputs``), ``uploads/`` (``/mnt/session/uploads``, read-only to the
sandbox), ``memory/<slug>/`` (``/mnt/memory/<slug>``, one per memory store: writable
or read-only as attached; ``/mnt/memory`` itself is read-only) and ``skills/<name>/``
(``/mnt/skills/<name>``, the agent's skills, read-only). They outlive the sandbox's
processes and server restarts, and go with the session.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agenthost.sandbox.base import MemoryMount
from agenthost.sandbox.rooted import WORKSPACE, Mount, RootedFiles

OUTPUTS = "/mnt/session/outputs"
UPLOADS = "/mnt/session/uploads"
MEMORY = "/mnt/memory"
SKILLS = "/mnt/skills"


@dataclass(frozen=True)
class SessionDirs:
    root: Path

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def memory(self) -> Path:
        return self.root / "memory"

    @property
    def skills(self) -> Path:
        return self.root / "skills"

    def create(self, owner: tuple[int, int] | None, memory: tuple[MemoryMount, ...] = ()) -> None:
        """Make the directories; the writable ones belong to ``owner`` (mode 0700) when given."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        stores = [(self.memory / mount.slug, mount.writable) for mount in memory]
        every = [
            (self.workspace, True),
            (self.outputs, True),
            (self.uploads, False),
            (self.memory, False),
            (self.skills, False),
            *stores,
        ]
        for path, writable in every:
            path.mkdir(exist_ok=True, mode=0o700 if writable else 0o755)
            if writable and owner is not None:
                os.chown(path, *owner)
                path.chmod(0o700)

    def remove(self) -> None:
        remove_tree(self.root)

    def files(
        self, owner: tuple[int, int] | None, *, session_mounts: bool = True, memory: tuple[MemoryMount, ...] = ()
    ) -> RootedFiles:
        mounts = [Mount(WORKSPACE, self.workspace)]
        if session_mounts:
            mounts += [Mount(OUTPUTS, self.outputs), Mount(UPLOADS, self.uploads, writable=False)]
            mounts += [Mount(MEMORY, self.memory, writable=False), Mount(SKILLS, self.skills, writable=False)]
            mounts += [Mount(f"{MEMORY}/{m.slug}", self.memory / m.slug, writable=m.writable) for m in memory]
        return RootedFiles(mounts, owner)


def remove_tree(path: Path) -> None:
    """Delete a directory tree the agent shaped: ``rm`` walks any depth (shutil.rmtree recurses in Python)."""
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, check=False)


def session_ids_on_disk(root: Path) -> list[str]:
    """Sessions with files under ``root``."""
    try:
        return [
            entry.name
            for entry in os.scandir(root)
            if entry.name.startswith("sesn_") and entry.is_dir(follow_symlinks=False)
        ]
    except FileNotFoundError:
        return []
