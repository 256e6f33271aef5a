"""The sandbox interface (layer 1; issue #4).

A backend makes one :class:`Sandbox` per session. A sandbox runs shell commands in a
persistent shell and gives the file tools confined access to the directories it sees as
``/workspace``, ``/mnt/session/outputs`` and ``/mnt/session/uploads``, whatever the
backend does to contain them. Its files live on disk for the session's lifetime; its
processes only while it is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from agenthost.sandbox.rooted import RootedFiles

# Hosts a `limited` environment may reach when `allow_package_managers` is true.
PACKAGE_REGISTRY_HOSTS = (
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "rubygems.org",
    "index.rubygems.org",
    "proxy.golang.org",
    "sum.golang.org",
)


@dataclass
class CommandResult:
    """What a shell command printed (stdout and stderr interleaved) and how it ended."""

    output: str
    exit_code: int | None
    timed_out: bool = False
    shell_exited: bool = False
    """The command ended the persistent shell itself (``exit``); the next command gets a new one."""


@dataclass(frozen=True)
class NetworkPolicy:
    """Where a sandbox's traffic may go (through the egress proxy; there is no other route)."""

    unrestricted: bool = True
    allowed_hosts: tuple[str, ...] = ()
    """Under `limited`: exact hostnames and ``*.suffix`` wildcards."""
    package_managers: bool = False
    """Under `limited`: the package registries (and the operator's mirrors) are allowed too."""

    def allows(self, host: str, registries: tuple[str, ...] = PACKAGE_REGISTRY_HOSTS) -> bool:
        host = host.lower().rstrip(".")
        if self.unrestricted or (self.package_managers and host in registries):
            return True
        return any(
            host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in self.allowed_hosts
        )

    @classmethod
    def from_environment(cls, networking: dict[str, Any], mcp_urls: list[str]) -> NetworkPolicy:
        """The policy of an environment's ``networking`` config for an agent with these MCP servers."""
        if networking.get("type") != "limited":
            return cls()
        hosts = [host.lower() for host in networking.get("allowed_hosts") or []]
        if networking.get("allow_mcp_servers"):
            hosts.extend(filter(None, (urlsplit(url).hostname for url in mcp_urls)))
        return cls(False, tuple(dict.fromkeys(hosts)), bool(networking.get("allow_package_managers")))


@dataclass(frozen=True)
class Packages:
    """What an environment installs in its sandboxes, by manager (the ones agenthost can install)."""

    npm: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.npm or self.pip)

    @classmethod
    def from_environment(cls, packages: dict[str, Any]) -> Packages:
        return cls(tuple(packages.get("npm") or ()), tuple(packages.get("pip") or ()))


@dataclass(frozen=True)
class MemoryMount:
    """A memory store mounted at ``/mnt/memory/<slug>``, writable or read-only."""

    slug: str
    writable: bool


@dataclass(frozen=True)
class SecretInjection:
    """An ``environment_variable`` credential: the sandbox's ``name`` holds ``placeholder``, and the egress
    proxy puts ``value`` in its place in requests to ``hosts`` (None: any host the environment allows)."""

    name: str
    placeholder: str
    value: str = field(repr=False)
    hosts: tuple[str, ...] | None
    header: bool
    body: bool

    def applies(self, host: str) -> bool:
        if self.hosts is None:
            return True
        host = host.lower().rstrip(".")
        return any(host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in self.hosts)


@dataclass(frozen=True)
class SandboxSpec:
    """What a session's sandbox must look like."""

    session_id: str
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    packages: Packages = field(default_factory=Packages)
    memory: tuple[MemoryMount, ...] = ()
    secrets: tuple[SecretInjection, ...] = ()


class Sandbox(Protocol):
    """One session's execution environment."""

    files: RootedFiles
    """The file tools' confined view of the sandbox's directories."""

    async def start(self) -> None:
        """Make sure the sandbox is running: create it, or check that the running one is alive."""
        ...

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run a command in the session's persistent shell; tear the sandbox down on timeout."""
        ...

    async def restart(self) -> None:
        """Replace the persistent shell with a fresh one."""
        ...

    async def interrupt(self) -> None:
        """Kill every process of the sandbox now (the next command starts it again)."""
        ...

    async def close(self) -> None:
        """Stop every process of the sandbox; the files stay."""
        ...


class SandboxBackend(Protocol):
    """Makes and finds sandboxes."""

    name: str
    """Recorded on each session, so a restarted server knows whose sandbox it is."""

    async def get(self, spec: SandboxSpec) -> Sandbox:
        """The session's sandbox (its directories created on first use); it starts on first command."""
        ...

    async def prepare(self, spec: SandboxSpec) -> None:
        """Provision what a sandbox needs before it runs (directories, packages) without starting one.

        Raises SandboxUnavailable when that fails (a package that does not install).
        """
        ...

    async def stop(self, session_id: str) -> None:
        """Stop the session's processes (it went idle); the files stay for the next turn."""
        ...

    async def destroy(self, session_id: str) -> None:
        """Stop the session's sandbox and delete its files."""
        ...

    async def reconcile(self, existing: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        """At start: kill processes a dead server left, and delete the files of sessions that no longer exist.

        ``existing`` says which of the session ids found on disk still exist in the store.
        """
        ...

    async def close(self) -> None:
        """Stop every sandbox (server shutdown); files stay."""
        ...

    def live(self) -> int:
        """How many sandboxes this backend holds now (started or ready to start)."""
        ...


class SandboxUnavailable(Exception):
    """The sandbox could not be started; the message says why (the model sees it as a tool error)."""
