"""The bubblewrap backend: an isolated sandbox per session, the default on Linux (issue #4).

Each session's sandbox is one ``bwrap`` process tree (``../shared/notes/SANDBOX.md`` §3.3
and §4 measured the choices):

* **identity**: it runs as the session's own unprivileged host uid (a root server never
  starts bwrap as root; a non-root server runs it as itself), in a user namespace with
  no capabilities;
* **filesystem**: a fresh root with ``/usr``, ``/etc`` and ``/opt`` read-only,
  ``/workspace`` and ``/mnt/session/outputs`` writable, ``/mnt/session/uploads``
  read-only, a size-limited tmpfs ``/tmp``, its own ``/proc`` and ``/dev``; the host's
  other directories, and other sessions', are not there at all. Directories are passed
  to bwrap as open descriptors, so the sandbox uid needs no access to their parents;
* **namespaces**: its own pid, ipc, uts, cgroup and network namespaces; the network has
  only loopback, where the server listens as the egress proxy (:mod:`egress`);
* **limits**: a cgroup per sandbox (memory, pids, cpu; :mod:`cgroups`) joined before
  the shell starts, plus rlimits (open files, file size, core dumps, processes);
* **lifetime**: ``--die-with-parent``; stopping it SIGKILLs bwrap, which ends the PID
  namespace and so every process in it, ``setsid`` ones included, and the cgroup is
  killed too. Files stay on disk under ``<root>/<session_id>/`` until the session is
  deleted.

Start-up order: bwrap sets the namespaces up and waits on ``--block-fd``; meanwhile the
server reads the sandbox's pid from ``--info-fd``, moves it into its cgroup and opens
the proxy socket in its network namespace, then releases it to exec the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agenthost.sandbox.base import PACKAGE_REGISTRY_HOSTS, CommandResult, SandboxSpec, SandboxUnavailable
from agenthost.sandbox.cgroups import Cgroup, CgroupTree, Limits
from agenthost.sandbox.cgroups import detect as detect_cgroups
from agenthost.sandbox.directories import OUTPUTS, UPLOADS, SessionDirs, session_ids_on_disk
from agenthost.sandbox.egress import PORT, EgressProxy, listen_in_namespace
from agenthost.sandbox.packages import INSTALL_TIMEOUT, MOUNT, PackageCache, environment_variables
from agenthost.sandbox.rooted import WORKSPACE
from agenthost.sandbox.shell import ShellSandbox

log = logging.getLogger("agenthost.sandbox")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_START_TIMEOUT = 15.0


@dataclass(frozen=True)
class BwrapSettings:
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


class BwrapUnavailable(Exception):
    """bubblewrap is missing or cannot create namespaces here; the message says how to fix it."""


def probe(bwrap: str | None = None) -> str:
    """The bwrap binary, after checking that it can build a sandbox on this machine."""
    binary = bwrap or shutil.which("bwrap")
    if binary is None:
        raise BwrapUnavailable(
            "bubblewrap is not installed. Install it (Debian/Ubuntu: `apt-get install bubblewrap`), "
            "or set AGENTHOST_SANDBOX=local to run tools with NO isolation on a trusted machine."
        )
    command = [binary, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    kwargs: dict[str, object] = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise BwrapUnavailable(
            f"bubblewrap cannot create a sandbox here ({result.stderr.strip() or f'exit {result.returncode}'}). "
            "Unprivileged user namespaces must be enabled (sysctl kernel.unprivileged_userns_clone=1 or "
            "user.max_user_namespaces > 0; in a container, allow them), "
            "or set AGENTHOST_SANDBOX=local to run tools with NO isolation on a trusted machine."
        )
    return binary


class BwrapSandbox(ShellSandbox):
    """One session's bwrap sandbox with its persistent shell."""

    def __init__(
        self,
        backend: BwrapBackend,
        spec: SandboxSpec,
        dirs: SessionDirs,
        uid: int,
        build_into: Path | None = None,
    ):
        super().__init__()
        self.backend = backend
        self.spec = spec
        self.dirs = dirs
        self.uid = uid
        self.build_into = build_into
        """For a package build: the directory mounted writable at /opt/agenthost."""
        self.files = dirs.files((uid, uid))
        self.child_pid: int | None = None
        self._cgroup: Cgroup | None = None
        self._proxy: EgressProxy | None = None

    def _environment(self) -> dict[str, str]:
        env = {"PATH": PATH, "HOME": WORKSPACE, "LANG": "C.UTF-8", "TERM": "dumb"}
        if self.backend.network:
            proxy = f"http://127.0.0.1:{PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = proxy
            env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1"
        env |= self.backend.settings.mirror_variables()
        if self.build_into is None:
            extra = environment_variables(self.spec.packages)
            if prefix := extra.pop("PATH_PREFIX", None):
                env["PATH"] = f"{prefix}:{PATH}"
            env |= extra
        return env

    def _argv(self, fds: dict[str, int], info_fd: int, block_fd: int) -> list[str]:
        settings = self.backend.settings
        argv = [
            self.backend.bwrap,
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
        ]  # fmt: skip
        with contextlib.suppress(FileNotFoundError):  # /opt entry by entry: /opt/agenthost is ours
            for entry in sorted(os.listdir("/opt")):
                if entry != "agenthost":
                    argv += ["--ro-bind-try", f"/opt/{entry}", f"/opt/{entry}"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), f"/{name}"]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(settings.tmp_bytes), "--tmpfs", "/tmp",
            "--bind-fd", str(fds["workspace"]), WORKSPACE,
            "--bind-fd", str(fds["outputs"]), OUTPUTS,
            "--ro-bind-fd", str(fds["uploads"]), UPLOADS,
            "--chdir", WORKSPACE, "--clearenv",
            "--info-fd", str(info_fd), "--block-fd", str(block_fd),
        ]  # fmt: skip
        if "packages" in fds:
            argv += ["--bind-fd" if self.build_into else "--ro-bind-fd", str(fds["packages"]), MOUNT]
        for name, value in self._environment().items():
            argv += ["--setenv", name, value]
        limits = [
            f"ulimit -HSn {settings.open_files}",
            "ulimit -HSc 0",
            f"ulimit -HSf {settings.file_bytes // 1024}",
            f"ulimit -HSu {self.backend.settings.limits.pids}",
        ]
        inner = "; ".join(f"{line} 2>/dev/null" for line in limits) + "; exec /bin/bash --noprofile --norc"
        return argv + ["/bin/bash", "--noprofile", "--norc", "-c", inner]

    async def _launch(self) -> asyncio.subprocess.Process:
        packages = self.build_into or await self.backend.prepare(self.spec)
        directories = {name: getattr(self.dirs, name) for name in ("workspace", "outputs", "uploads")}
        if packages is not None:
            directories["packages"] = packages
        fds = {name: os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for name, path in directories.items()}
        info_read, info_write = os.pipe2(os.O_CLOEXEC)
        block_read, block_write = os.pipe2(os.O_CLOEXEC)
        # setpriv rather than subprocess's user=: uvloop's subprocess support has no uid switching.
        uid = str(self.uid)
        become = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        process: asyncio.subprocess.Process | None = None
        try:
            process = await asyncio.create_subprocess_exec(
                *(become if self.backend.switch_user else []),
                *self._argv(fds, info_write, block_read),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(*fds.values(), info_write, block_read),
                env={"PATH": PATH},
                start_new_session=True,
            )
            for fd in (*fds.values(), info_write, block_read):
                os.close(fd)
            fds.clear()
            info_write = block_read = -1
            info = await asyncio.wait_for(asyncio.to_thread(_read_json, info_read), _START_TIMEOUT)
            if info is None:
                assert process.stdout is not None
                error = (await asyncio.wait_for(process.stdout.read(), 5)).decode(errors="replace").strip()
                raise SandboxUnavailable(f"bubblewrap failed to start the sandbox: {error or 'no output'}")
            self.child_pid = int(info["child-pid"])
            if self.backend.cgroups is not None:
                tree = self.backend.cgroups
                self._cgroup = await asyncio.to_thread(tree.create, self.spec.session_id, self.backend.settings.limits)
                await asyncio.to_thread(self._cgroup.add, self.child_pid)
            if self.backend.network:
                self._proxy = EgressProxy(
                    self.spec.network,
                    self.backend.settings.trusted_hosts,
                    self.spec.session_id,
                    self.backend.settings.registries(),
                )
                await self._proxy.serve(await listen_in_namespace(self.child_pid))
            os.write(block_write, b"go")
            return process
        except BaseException:
            if process is not None:
                await self._teardown(process)
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
            raise
        finally:
            for fd in (*fds.values(), info_read, info_write, block_read, block_write):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    async def _teardown(self, shell: asyncio.subprocess.Process) -> None:
        # SIGKILL to the namespace's first process ends every process in it; bwrap itself follows.
        # (A child still waiting on --block-fd has no parent-death signal yet: kill it by pid.)
        if self.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            shell.send_signal(signal.SIGKILL)
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy.close()
        self.child_pid = None


def _read_json(fd: int) -> dict[str, object] | None:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(data)
    return None


class BwrapBackend:
    """Makes bubblewrap sandboxes under ``root`` (see the module docstring)."""

    name = "bwrap"

    def __init__(self, root: Path, settings: BwrapSettings, bwrap: str | None = None):
        self.root = root
        self.settings = settings
        self.bwrap = probe(bwrap)
        self.switch_user = os.geteuid() == 0
        self.network = self.switch_user  # the in-namespace proxy socket needs CAP_SYS_ADMIN
        self.cgroups: CgroupTree | None = detect_cgroups() if self.switch_user else None
        if not self.network:
            log.warning("not running as root: sandboxes get no network (the egress proxy needs CAP_SYS_ADMIN)")
        if self.cgroups is None:
            log.warning("no writable cgroup hierarchy: sandboxes are limited by rlimits only, not memory or cpu")
        self._sandboxes: dict[str, BwrapSandbox] = {}
        self.packages = PackageCache(root, settings.mirrors)

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
        builder = BwrapSandbox(self, spec, home, uid, build_into=into)
        try:
            return await builder.run(command, INSTALL_TIMEOUT)
        finally:
            await builder.close()
            await asyncio.to_thread(home.remove)

    def uid_for(self, session_id: str) -> int:
        if not self.switch_user:
            return os.getuid()
        return self.settings.uid_base + zlib.crc32(session_id.encode()) % self.settings.uid_span

    async def get(self, spec: SandboxSpec) -> BwrapSandbox:
        sandbox = self._sandboxes.get(spec.session_id)
        if sandbox is None or sandbox.spec != spec:
            if sandbox is not None:
                await sandbox.close()
            dirs, uid = SessionDirs(self.root / spec.session_id), self.uid_for(spec.session_id)
            await asyncio.to_thread(dirs.create, (uid, uid) if self.switch_user else None)
            sandbox = self._sandboxes[spec.session_id] = BwrapSandbox(self, spec, dirs, uid)
        return sandbox

    async def stop(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def destroy(self, session_id: str) -> None:
        await self.stop(session_id)
        await asyncio.to_thread(SessionDirs(self.root / session_id).remove)

    async def reconcile(self, existing: Callable[[list[str]], Awaitable[set[str]]]) -> None:
        if self.cgroups is not None:
            for group in await asyncio.to_thread(self.cgroups.leftovers):
                await asyncio.to_thread(group.remove)
        on_disk = await asyncio.to_thread(session_ids_on_disk, self.root)  # before the sessions are read
        live = await existing(on_disk)
        for session_id in on_disk:
            if session_id not in live:
                await asyncio.to_thread(SessionDirs(self.root / session_id).remove)

    async def close(self) -> None:
        for session_id in list(self._sandboxes):
            await self.stop(session_id)
