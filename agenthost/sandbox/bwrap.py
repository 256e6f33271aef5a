"""The bubblewrap backend: an isolated sandbox per session, the default on Linux.

Each session's sandbox is one ``bwrap`` process tree (docs/sandbox.md says why each choice):

* **identity**: it runs as the session's own unprivileged host uid (a root server never
  starts bwrap as root; a non-root server runs it as itself), in a user namespace with
  no capabilities;
* **filesystem**: a fresh root with ``/usr`` and ``/etc`` read-only,
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
import os
import shutil
import signal
import subprocess
from pathlib import Path

from agenthost.sandbox.base import SandboxSpec, SandboxUnavailable
from agenthost.sandbox.cgroups import Cgroup, CgroupTree
from agenthost.sandbox.cgroups import detect as detect_cgroups
from agenthost.sandbox.directories import MEMORY, OUTPUTS, SKILLS, UPLOADS, SessionDirs
from agenthost.sandbox.host import CA_BUNDLE, PATH, HostBackend, HostSandbox, SandboxConfig, log
from agenthost.sandbox.leftovers import kill_orphans, marks
from agenthost.sandbox.packages import MOUNT
from agenthost.sandbox.rooted import WORKSPACE

_START_TIMEOUT = 15.0


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


class BwrapSandbox(HostSandbox):
    """One session's bwrap sandbox with its persistent shell."""

    backend: BwrapBackend
    child_pid: int | None = None
    _pidfd: int | None = None
    """The namespace's first process, held by pidfd: a recycled pid is never signalled."""
    _cgroup: Cgroup | None = None

    def _argv(self, fds: dict[str, int], info_fd: int, block_fd: int) -> list[str]:
        config = self.backend.config
        argv = [
            self.backend.bwrap,
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
        ]  # fmt: skip
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), f"/{name}"]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(config.tmp_bytes), "--tmpfs", "/tmp",
            "--bind-fd", str(fds["workspace"]), WORKSPACE,
            "--bind-fd", str(fds["outputs"]), OUTPUTS,
            "--ro-bind-fd", str(fds["uploads"]), UPLOADS,
            "--ro-bind-fd", str(fds["memory"]), MEMORY,
            "--ro-bind-fd", str(fds["skills"]), SKILLS,
        ]  # fmt: skip
        for mount in self.spec.memory:  # inside the read-only /mnt/memory, each store as attached
            argv += ["--bind-fd" if mount.writable else "--ro-bind-fd", str(fds[f"memory:{mount.slug}"])]
            argv.append(f"{MEMORY}/{mount.slug}")
        if self.ca_bundle is not None:  # over the system's bundle: it also trusts the egress proxy's CA
            argv += ["--ro-bind", str(self.ca_bundle), CA_BUNDLE]
        argv += [
            "--chdir", WORKSPACE, "--clearenv",
            "--info-fd", str(info_fd), "--block-fd", str(block_fd),
        ]  # fmt: skip
        if "packages" in fds:
            argv += ["--bind-fd" if self.build_into else "--ro-bind-fd", str(fds["packages"]), MOUNT]
        for name, value in self.environment().items():
            argv += ["--setenv", name, value]
        return argv + config.shell()

    async def _launch(self) -> asyncio.subprocess.Process:
        packages = await self.packages()
        names = ("workspace", "outputs", "uploads", "memory", "skills")
        directories = {name: getattr(self.dirs, name) for name in names}
        directories |= {f"memory:{mount.slug}": self.dirs.memory / mount.slug for mount in self.spec.memory}
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
            spawn = asyncio.ensure_future(
                asyncio.create_subprocess_exec(
                    *(become if self.backend.switch_user else []),
                    *self._argv(fds, info_write, block_read),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    pass_fds=(*fds.values(), info_write, block_read),
                    env={"PATH": PATH, **self.backend.marks},
                    start_new_session=True,
                )
            )
            try:
                process = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                # Never cancel the spawn itself: asyncio would then wait for the child's pipes to close,
                # and the sandbox's first process holds them while it waits on --block-fd, which is ours.
                # Let it finish (milliseconds), then the handler below tears the child down.
                while not spawn.done():  # a second cancellation must not abandon the child either
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait({spawn})
                if not spawn.cancelled() and spawn.exception() is None:
                    process = spawn.result()
                raise
            for fd in (*fds.values(), info_write, block_read):
                os.close(fd)
            fds.clear()
            info_write = block_read = -1
            info = await asyncio.wait_for(_read_info(info_read), _START_TIMEOUT)
            if info is None:
                assert process.stdout is not None
                error = (await asyncio.wait_for(process.stdout.read(), 5)).decode(errors="replace").strip()
                raise SandboxUnavailable(f"bubblewrap failed to start the sandbox: {error or 'no output'}")
            self._hold(int(info["child-pid"]))
            if self.backend.cgroups is not None:
                tree, limits = self.backend.cgroups, self.backend.config.limits
                self._cgroup = await asyncio.to_thread(tree.create, self.spec.session_id, limits)
                await asyncio.to_thread(self._cgroup.add, int(info["child-pid"]))
            if self.backend.network:
                await self.open_proxy(int(info["child-pid"]))
            os.write(block_write, b"go")
            return process
        except BaseException:
            if process is not None:
                if self._pidfd is None:  # cancelled or failed before the pid was read: it is in the pipe by now
                    with contextlib.suppress(TimeoutError, OSError, KeyError, TypeError, ValueError):
                        info = await asyncio.wait_for(_read_info(info_read), 2)
                        if info is not None:
                            self._hold(int(info["child-pid"]))
                children = _children(process.pid) if self._pidfd is None else []
                if children:  # no info in time (a loaded machine): bwrap's one child is the namespace's first
                    self._hold(children[0])
                await self._teardown(process)
                with contextlib.suppress(ProcessLookupError, TimeoutError):
                    await asyncio.wait_for(process.wait(), 5)
            raise
        finally:
            for fd in (*fds.values(), info_read, info_write, block_read, block_write):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _hold(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._pidfd = os.pidfd_open(pid)
            self.child_pid = pid

    async def _teardown(self, shell: asyncio.subprocess.Process) -> None:
        # SIGKILL to the namespace's first process ends every process in it; bwrap itself follows.
        # (A child still waiting on --block-fd has no parent-death signal yet: it is killed directly.)
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        with contextlib.suppress(ProcessLookupError):
            shell.send_signal(signal.SIGKILL)
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)
        await self.close_proxy()
        self.child_pid = None


async def _read_info(fd: int) -> dict[str, object] | None:
    """bwrap's --info-fd JSON (None when bwrap closed it without writing: it failed), read without a thread."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = b""
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _settle, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(data)


def _children(pid: int) -> list[int]:
    """The pids of a process's children (bwrap's: the sandbox's first process), read before bwrap is killed."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class BwrapBackend(HostBackend):
    """Makes bubblewrap sandboxes under ``root`` (see the module docstring)."""

    name = "bwrap"

    def __init__(self, root: Path, config: SandboxConfig, bwrap: str | None = None):
        root_server = os.geteuid() == 0
        # The proxy socket in a sandbox's network namespace needs CAP_SYS_ADMIN: root only.
        super().__init__(root, config, switch_user=root_server, network=root_server)
        self.bwrap = probe(bwrap)
        self.marks = marks(root)
        """The variables in every bwrap's environment that tell, after a crash, whose sandbox it is."""
        self.cgroups: CgroupTree | None = detect_cgroups() if root_server else None
        if not self.network:
            log.warning("not running as root: sandboxes get no network (the egress proxy needs CAP_SYS_ADMIN)")
        if self.cgroups is None:
            log.warning("no writable cgroup hierarchy: sandboxes are limited by rlimits only, not memory or cpu")

    def _make(self, spec: SandboxSpec, dirs: SessionDirs, uid: int, build_into: Path | None = None) -> BwrapSandbox:
        return BwrapSandbox(self, spec, dirs, uid, build_into)

    async def _reconcile_processes(self) -> None:
        await asyncio.to_thread(kill_orphans, self.root)
        if self.cgroups is not None:
            for group in await asyncio.to_thread(self.cgroups.leftovers):
                await asyncio.to_thread(group.remove)
