"""A session's memory stores as directories of its sandbox.

Each attached store is a directory ``/mnt/memory/<slug>`` whose files are the store's
memories (a memory's path is the file's path below the directory). Before a tool runs in
the sandbox, the directories are brought up to date with the stores (others may have
written since); after a tool that can write (``bash``, ``write``, ``edit``), what changed in
a writable store's directory is written back as new memory versions by the session's actor,
one memory at a time. A change the store refuses (too large, not UTF-8, a bad path, an
archived or full store) is undone on disk and told to the agent with the tool's result.
Concurrent writers: the last write wins, and every write is a version, so nothing is lost
from the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from agenthost.engine.manifests import read_manifest, write_manifest
from agenthost.errors import AgentHostError
from agenthost.sandbox.base import MemoryMount, Sandbox
from agenthost.schemas.common import JSON
from agenthost.schemas.memory import Actor
from agenthost.store.db import Database
from agenthost.store.memory import contents, delete_memory_by_path, digests, write_memory

log = logging.getLogger("agenthost.engine")

MEMORY = "/mnt/memory"
MAX_BYTES = 102_400  # a memory's content limit in UTF-8 bytes
OVERSIZE = "oversize"


@dataclass(frozen=True)
class AttachedStore:
    store_id: str
    slug: str
    writable: bool

    @property
    def root(self) -> str:
        return f"{MEMORY}/{self.slug}"


def attached_stores(resources: list[JSON]) -> list[AttachedStore]:
    return [
        AttachedStore(r["memory_store_id"], r["mount_path"].rsplit("/", 1)[-1], r.get("access") != "read_only")
        for r in resources
        if r["type"] == "memory_store"
    ]


def memory_mounts(resources: list[JSON]) -> tuple[MemoryMount, ...]:
    """The sandbox mounts of a session's memory stores."""
    return tuple(MemoryMount(store.slug, store.writable) for store in attached_stores(resources))


def memory_prompt(resources: list[JSON]) -> str | None:
    """The system prompt's note about the session's memory stores (name, path, access, description, instructions)."""
    stores = [r for r in resources if r["type"] == "memory_store"]
    if not stores:
        return None
    lines = [
        "Memory stores are mounted in your sandbox as directories of text files. Read and change them with "
        "your file tools; what you write to a read_write store is kept across sessions and seen by other "
        "sessions that use it. Files under a read_only store cannot be changed.",
    ]
    for store in stores:
        line = f"- {store['mount_path']} ({store['access']}): {store['name']}"
        if store.get("description"):
            line += f". {store['description']}"
        if store.get("instructions"):
            line += f"\n  Instructions: {store['instructions']}"
        lines.append(line)
    return "\n".join(lines)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _scan(sandbox: Sandbox, store: AttachedStore) -> dict[str, bytes | None]:
    """``{memory path: content}`` of the store's directory (None: too large to be a memory)."""
    found: dict[str, bytes | None] = {}
    try:
        for display, info, dir_fd, name in sandbox.files.walk(store.root):
            path = display[len(store.root) :]
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:  # a name that is not UTF-8 cannot be a memory's path: left on disk only
                continue
            found[path] = None if info.st_size > MAX_BYTES else sandbox.files.read_at(dir_fd, name, MAX_BYTES)
    except Exception as exc:  # the directory is not there (yet), or cannot be read: nothing to mirror
        log.debug("memory directory %s unreadable: %s", store.root, exc)
    return found


class MemoryMirror:
    """Mirrors one session's memory stores into its sandbox and back, for the run that holds the session."""

    def __init__(self, db: Database, session_id: str, resources: list[JSON]):
        self.db = db
        self.actor = Actor.session(session_id)
        self.stores = attached_stores(resources)
        self._disk: dict[str, dict[str, str]] | None = None  # slug -> {path: sha} as last mirrored
        self._manifest: Path | None = None

    async def pull(self, sandbox: Sandbox) -> None:
        """Bring every store's directory up to date with the store (nothing when the sandbox has no mounts).

        A run's first pull starts from the manifest the last run left (what was mirrored then): changes
        on disk since, which a cut-off run never wrote back, are written back first instead of lost.
        """
        memory_dir = sandbox.files.host_dir(MEMORY)
        if not self.stores or memory_dir is None:
            return
        if self._disk is None:
            self._manifest = memory_dir.parent / "memory.json"
            self._disk = await asyncio.to_thread(read_manifest, self._manifest)
            if self._disk:
                await self.push(sandbox)
        for store in self.stores:
            stored = await self.db.run_read(lambda conn, s=store: digests(conn, s.store_id))
            if store.slug not in self._disk:  # no manifest: what is on disk now is taken as mirrored
                on_disk = await asyncio.to_thread(_scan, sandbox, store)
                self._disk[store.slug] = {p: _sha(d) if d is not None else OVERSIZE for p, d in on_disk.items()}
            mirrored = self._disk[store.slug]
            stale = [path for path, sha in stored.items() if mirrored.get(path) != sha]
            gone = [path for path in mirrored if path not in stored]
            if not stale and not gone:
                continue
            fresh = await self.db.run_read(lambda conn, s=store, p=stale: contents(conn, s.store_id, p))
            await asyncio.to_thread(self._apply, sandbox, store, fresh, gone)
            for path in gone:
                mirrored.pop(path, None)
            for path, data in fresh.items():  # what was written, not what was listed (it may have changed since)
                mirrored[path] = _sha(data)
        await self._save()

    async def _save(self) -> None:
        if self._manifest is not None and self._disk is not None:
            await asyncio.to_thread(write_manifest, self._manifest, self._disk)

    @staticmethod
    def _apply(sandbox: Sandbox, store: AttachedStore, fresh: dict[str, bytes], gone: list[str]) -> None:
        view = sandbox.files.server_view()
        for path in gone:
            try:
                view.remove(store.root + path)
            except Exception as exc:  # a path the agent made unusable: leave it, the rest still syncs
                log.warning("could not remove %s%s from the sandbox: %s", store.root, path, exc)
        for path, data in fresh.items():
            try:
                view.write_bytes(store.root + path, data)
            except Exception as exc:  # e.g. a directory where the file goes, or a name the filesystem refuses
                log.warning("could not mirror %s%s into the sandbox: %s", store.root, path, exc)

    async def push(self, sandbox: Sandbox) -> list[str]:
        """Write back what changed in the writable stores' directories; the notes for the agent."""
        notes: list[str] = []
        if self._disk is None:
            return notes
        for store in self.stores:
            if not store.writable:
                continue
            on_disk = await asyncio.to_thread(_scan, sandbox, store)
            mirrored = self._disk.setdefault(store.slug, {})
            # Deletions first: a file replaced by a directory of the same name must be gone before the
            # directory's files are written.
            for path in [p for p in mirrored if p not in on_disk]:
                try:
                    await self.db.run_write(
                        lambda conn, s=store, p=path: delete_memory_by_path(conn, s.store_id, p, self.actor)
                    )
                except AgentHostError as exc:
                    notes.append(f"{store.root + path} was not deleted from the memory store: {exc.message}")
                del mirrored[path]
            for path, data in on_disk.items():
                sha = _sha(data) if data is not None else OVERSIZE
                if mirrored.get(path) == sha:
                    continue
                note = await self._write(store, path, data)
                if note is None:
                    mirrored[path] = sha
                else:
                    notes.append(note)
                    await self._undo(sandbox, store, path, mirrored)
        await self._save()
        return notes

    async def _write(self, store: AttachedStore, path: str, data: bytes | None) -> str | None:
        """Write one memory; a note for the agent when the store refused it."""
        where = store.root + path
        if data is None:
            return f"{where} was not saved to the memory store: a memory holds at most {MAX_BYTES} bytes."
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return f"{where} was not saved to the memory store: memories are UTF-8 text."
        try:
            await self.db.run_write(lambda conn: write_memory(conn, store.store_id, path, text, self.actor))
        except AgentHostError as exc:
            return f"{where} was not saved to the memory store: {exc.message}"
        return None

    async def _undo(self, sandbox: Sandbox, store: AttachedStore, path: str, mirrored: dict[str, str]) -> None:
        """Put a refused change back as the store has it."""
        fresh = await self.db.run_read(lambda conn: contents(conn, store.store_id, [path]))
        gone = [] if path in fresh else [path]
        await asyncio.to_thread(self._apply, sandbox, store, fresh, gone)
        if path in fresh:
            mirrored[path] = _sha(fresh[path])
        else:
            mirrored.pop(path, None)
