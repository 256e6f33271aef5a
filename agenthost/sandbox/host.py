"""What the isolated backends share: sandboxes on this host's disk (layer 1).

The bubblewrap and Docker backends differ only in how a sandbox's processes are started
and stopped. Both keep a session's files in :class:`SessionDirs`, run its commands in a
persistent bash with the same environment and rlimits, serve its egress proxy inside its
network namespace, build environment packages in a throwaway sandbox of their own kind,
and give each session its own host uid.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agenthost.sandbox.base import PACKAGE_REGISTRY_HOSTS, CommandResult, SandboxSpec
from agenthost.sandbox.cgroups import Limits
from agenthost.sandbox.directories import SessionDirs, session_ids_on_disk
from agenthost.sandbox.egress import PORT, EgressProxy, listen_in_namespace

if TYPE_CHECKING:
    from agenthost.sandbox.interception import Interceptor
from agenthost.sandbox.packages import INSTALL_TIMEOUT, PackageCache, environment_variables
from agenthost.sandbox.rooted import WORKSPACE
from agenthost.sandbox.shell import ShellSandbox

log = logging.getLogger("agenthost.sandbox")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class SandboxConfig:
    """The operator's sandbox settings, the same for every backend."""

    limits: Limits
    tmp_bytes: int = 1 << 30
    open_files: int = 4096
    file_bytes: int = 10 << 30
    uid_base: int = 1_000_000_000
    uid_span: int = 1 << 24
    trusted_hosts: dict[str, str] = field(default_factory=dict)
    """Hostnames the egress proxy sends to a fixed address, exempt from the non-public rule."""
    mirrors: dict[str, str] = field(default_factory=dict)
    """Package index URLs by manager (``pip``, ``npm``) used instead of the public registries."""
    upstream_ca_file: Path | None = None
    """CAs the egress proxy also trusts when it re-encrypts a request it injected credentials into."""

    def registries(self) -> tuple[str, ...]:
        """Hosts `allow_package_managers` opens: the public registries and the mirrors."""
        mirrors = (urlsplit(url).hostname for url in self.mirrors.values())
        return PACKAGE_REGISTRY_HOSTS + tuple(host.lower() for host in mirrors if host)

    def mirror_variables(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if pip := self.mirrors.get("pip"):
            env["PIP_INDEX_URL"] = pip
            if urlsplit(pip).scheme == "http":
                env["PIP_TRUSTED_HOST"] = urlsplit(pip).hostname or ""
        if npm := self.mirrors.get("npm"):
            env["NPM_CONFIG_REGISTRY"] = npm
        return env

    def shell(self) -> list[str]:
        """The sandbox's first process: set the rlimits, then become the persistent shell."""
        limits = [
            f"ulimit -HSn {self.open_files}",
            "ulimit -HSc 0",
            f"ulimit -HSf {self.file_bytes // 1024}",
            f"ulimit -HSu {2 * self.limits.pids}",  # a backstop: the cgroup's pids.max stops a bomb first
        ]
        # stderr joins stdout inside the sandbox, so the two stay in order whatever carries them (docker exec
        # relays them as separate streams).
        inner = "; ".join(f"{line} 2>/dev/null" for line in limits) + "; exec /bin/bash --noprofile --norc 2>&1"
        return ["/bin/bash", "--noprofile", "--norc", "-c", inner]


class HostSandbox(ShellSandbox):
    """A sandbox whose files are :class:`SessionDirs` on this host and whose network is the egress proxy."""

    def __init__(
        self, backend: HostBackend, spec: SandboxSpec, dirs: SessionDirs, uid: int, build_into: Path | None = None
    ):
        super().__init__()
        self.backend = backend
        self.spec = spec
        self.dirs = dirs
        self.uid = uid
        self.build_into = build_into
        """For a package build: the directory mounted writable at /opt/agenthost."""
        self.files = dirs.files((uid, uid), memory=spec.memory)
        self._proxy: EgressProxy | None = None

    def environment(self) -> dict[str, str]:
        """The shell's whole environment: nothing of the server's leaks in."""
        env = {"PATH": PATH, "HOME": WORKSPACE, "LANG": "C.UTF-8", "TERM": "dumb"}
        if self.backend.network:
            proxy = f"http://127.0.0.1:{PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = proxy
            env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1"
        env |= self.backend.config.mirror_variables()
        if self.build_into is None:
            path, extra = environment_variables(self.spec.packages)
            env["PATH"] = ":".join([*path, PATH])
            env |= extra
        if self.spec.secrets and self.backend.network:
            for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"):
                env[name] = CA_BUNDLE  # the sandbox's bundle: the system's CAs and the egress proxy's
            env |= {secret.name: secret.placeholder for secret in self.spec.secrets}
        return env

    @property
    def ca_bundle(self) -> Path | None:
        """The host file mounted at CA_BUNDLE, when the sandbox trusts the egress proxy's CA."""
        return self.dirs.root / "ca-bundle.pem" if self.spec.secrets and self.backend.network else None

    async def packages(self) -> Path | None:
        """The directory to mount at /opt/agenthost (read-only unless this is a build), if any."""
        return self.build_into or await self.backend.prepare(self.spec)

    async def open_proxy(self, pid: int) -> None:
        """Serve the egress proxy inside the network namespace of ``pid`` (a process of the sandbox)."""
        config = self.backend.config
        self._proxy = EgressProxy(
            self.spec.network,
            config.trusted_hosts,
            self.spec.session_id,
            config.registries(),
            self.spec.secrets,
            self.backend.interceptor() if self.spec.secrets else None,
        )
        await self._proxy.serve(await listen_in_namespace(pid))

    async def close_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy.close()


class HostBackend:
    """Sandboxes under ``root``, one per session, made by :meth:`_make`."""

    name = "host"

    def __init__(self, root: Path, config: SandboxConfig, *, switch_user: bool, network: bool):
        self.root = root
        self.config = config
        self.switch_user = switch_user
        """Each session runs as its own uid (the server is root); otherwise as the server's."""
        self.network = network
        """Sandboxes reach the egress proxy (it listens in their namespace, which takes CAP_SYS_ADMIN)."""
        self.packages = PackageCache(root, config.mirrors)
        self._sandboxes: dict[str, HostSandbox] = {}
        self._interceptor: Interceptor | None = None

    def interceptor(self) -> Interceptor:
        """This process's TLS interception CA, made on first use."""
        if self._interceptor is None:
            from agenthost.sandbox.interception import Interceptor  # cryptography's x509, only when needed

            self._interceptor = Interceptor(self.config.upstream_ca_file)
        return self._interceptor

    def _make(self, spec: SandboxSpec, dirs: SessionDirs, uid: int, build_into: Path | None = None) -> HostSandbox:
        raise NotImplementedError

    async def _reconcile_processes(self) -> None:
        """Stop what a server that died left running."""

    def uid_for(self, name: str) -> int:
        if not self.switch_user:
            return os.getuid()
        return self.config.uid_base + zlib.crc32(name.encode()) % self.config.uid_span

    async def get(self, spec: SandboxSpec) -> HostSandbox:
        sandbox = self._sandboxes.get(spec.session_id)
        if sandbox is None or sandbox.spec != spec:
            if sandbox is not None:
                await sandbox.close()
            dirs, uid = SessionDirs(self.root / spec.session_id), self.uid_for(spec.session_id)
            await asyncio.to_thread(dirs.create, (uid, uid) if self.switch_user else None, spec.memory)
            sandbox = self._sandboxes[spec.session_id] = self._make(spec, dirs, uid)
            if sandbox.ca_bundle is not None:
                await asyncio.to_thread(sandbox.ca_bundle.write_bytes, self.interceptor().bundle())
        return sandbox

    async def prepare(self, spec: SandboxSpec) -> Path | None:
        """The spec's package directory, built first when needed; None when it has no packages."""
        if not spec.packages:
            return None
        return await self.packages.ensure(spec, self._build)

    async def _build(self, spec: SandboxSpec, into: Path, command: str) -> CommandResult:
        """Run an install command in a throwaway sandbox with ``into`` writable at /opt/agenthost."""
        uid = self.uid_for(".packages")
        home = SessionDirs(into.with_name(into.name + ".home"))
        owner = (uid, uid) if self.switch_user else None
        await asyncio.to_thread(home.create, owner)
        if owner is not None:
            await asyncio.to_thread(os.chown, into, *owner)
        builder = self._make(spec, home, uid, build_into=into)
        try:
            return await builder.run(command, INSTALL_TIMEOUT)
        finally:
            await builder.close()
            await asyncio.to_thread(home.remove)

    async def stop(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def destroy(self, session_id: str) -> None:
        await self.stop(session_id)
        await asyncio.to_thread(SessionDirs(self.root / session_id).remove)

    async def reconcile(self, existing: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        await self._reconcile_processes()
        await asyncio.to_thread(self.packages.clean)
        on_disk = await asyncio.to_thread(session_ids_on_disk, self.root)  # before the sessions are read
        live = await existing(on_disk)
        for session_id in on_disk:
            if session_id not in live:
                try:
                    await asyncio.to_thread(SessionDirs(self.root / session_id).remove)
                except OSError as exc:  # one unremovable directory must not keep the server from starting
                    log.warning("could not remove the files of deleted session %s: %s", session_id, exc)

    def live(self) -> int:
        return len(self._sandboxes)

    async def close(self) -> None:
        for session_id in list(self._sandboxes):
            await self.stop(session_id)
