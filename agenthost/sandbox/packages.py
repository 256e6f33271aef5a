"""Environment packages, installed once per environment and shared read-only (issue #4 point 6).

An environment's ``packages`` are installed in a build sandbox (same isolation, same
network policy as the environment's sessions) into ``<root>/.packages/<key>/``, where the
key hashes the package lists and the mirrors: pip packages into a virtualenv
(``/opt/agenthost/python``), npm packages into ``/opt/agenthost/node``, managers in
alphabetical order. Every session of an environment with the same lists then mounts that
directory read-only at ``/opt/agenthost``, with the virtualenv and ``node_modules/.bin``
first on ``PATH``: the second session starts as fast as one without packages. A failed
install raises SandboxUnavailable naming the manager, the packages and pip's or npm's
last words; nothing is cached, so the next turn tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

from agenthost.sandbox.base import CommandResult, Packages, SandboxSpec, SandboxUnavailable
from agenthost.sandbox.cgroups import process_alive
from agenthost.sandbox.directories import remove_tree

MOUNT = "/opt/agenthost"
PYTHON = f"{MOUNT}/python"
NODE = f"{MOUNT}/node"
INSTALL_TIMEOUT = 900.0


def environment_variables(packages: Packages) -> tuple[list[str], dict[str, str]]:
    """What a session's shell needs to find the installed packages first: PATH entries, other variables."""
    path: list[str] = []
    env: dict[str, str] = {}
    if packages.pip:
        path.append(f"{PYTHON}/bin")
        env["VIRTUAL_ENV"] = PYTHON
    if packages.npm:
        path.append(f"{NODE}/node_modules/.bin")
        env["NODE_PATH"] = f"{NODE}/node_modules"
    return path, env


def install_steps(packages: Packages) -> list[tuple[str, tuple[str, ...], str]]:
    """(manager, packages, shell command) in alphabetical manager order."""
    steps = []
    if packages.npm:
        names = " ".join(shlex.quote(name) for name in packages.npm)
        steps.append(
            ("npm", packages.npm, f"npm install --prefix {NODE} --no-audit --no-fund --no-update-notifier {names}")
        )
    if packages.pip:
        names = " ".join(shlex.quote(name) for name in packages.pip)
        steps.append(
            (
                "pip",
                packages.pip,
                f"python3 -m venv {PYTHON} && {PYTHON}/bin/pip install --no-input --disable-pip-version-check "
                f"--no-cache-dir --quiet {names}",
            )
        )
    return steps


# Runs one command in a build sandbox whose /opt/agenthost is the given writable directory.
Builder = Callable[[SandboxSpec, Path, str], Awaitable[CommandResult]]


class PackageCache:
    """Built package directories under ``<root>/.packages``, one per distinct set of packages."""

    def __init__(self, root: Path, mirrors: dict[str, str]):
        self.root = root / ".packages"
        self.mirrors = mirrors
        self._locks: dict[str, asyncio.Lock] = {}

    def key(self, packages: Packages) -> str:
        document = {"npm": packages.npm, "pip": packages.pip, "mirrors": self.mirrors}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]

    async def ensure(self, spec: SandboxSpec, build: Builder) -> Path:
        """The directory holding the spec's packages, built now if no earlier session built it.

        The build sandbox owns what it writes, so the server never writes inside it: the
        marker saying a build finished is a root-owned file beside the directory.
        """
        key = self.key(spec.packages)
        target, marker = self.root / key, self.root / f"{key}.complete"
        async with self._locks.setdefault(key, asyncio.Lock()):
            if marker.exists():
                return target
            staging = self.root / f"{key}.{os.getpid()}.building"
            await asyncio.to_thread(_fresh_dir, staging)
            try:
                for manager, names, command in install_steps(spec.packages):
                    result = await build(spec, staging, f"umask 022 && {command}")
                    if result.exit_code != 0:
                        last = "\n".join(result.output.strip().splitlines()[-15:])
                        why = "timed out" if result.timed_out else f"exit code {result.exit_code}"
                        raise SandboxUnavailable(
                            f"installing {manager} packages {', '.join(names)} failed ({why}): {last}"
                        )
                await asyncio.to_thread(_publish, staging, target, marker, spec.packages)
            finally:
                await asyncio.to_thread(remove_tree, staging)  # gone already when it was published
            return target

    def clean(self) -> None:
        """Remove builds that a server which is gone left half-done."""
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                parts = entry.name.split(".")
                if len(parts) >= 3 and parts[2].startswith("building") and not process_alive(int(parts[1])):
                    remove_tree(entry)


def _publish(staging: Path, target: Path, marker: Path, packages: Packages) -> None:
    if marker.exists():  # another server process finished the same build first
        return
    remove_tree(target)  # a build that was published without its marker (a crash between the two)
    staging.rename(target)
    summary = json.dumps({"npm": packages.npm, "pip": packages.pip}).encode()
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, summary)
    finally:
        os.close(fd)


def _fresh_dir(path: Path) -> None:
    remove_tree(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    path.mkdir(mode=0o755)
