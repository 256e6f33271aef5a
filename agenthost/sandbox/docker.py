"""The Docker backend: one hardened container per session (issue #4 point 8; optional).

For hosts where sandboxes should be containers: an image of the operator's choosing, or
a Docker engine that is managed apart from agenthost (the path to sandboxes on other
machines). It drives the ``docker`` CLI, so it needs no Python package; the engine is
``sandbox_docker_host`` (default: the CLI's own, ``DOCKER_HOST`` or the local socket).

Each session's container runs ``sleep infinity`` as the session's uid with every
capability dropped, ``no-new-privileges``, a read-only root, a private ``/tmp`` tmpfs,
pids, memory and CPU limits, and ``--network none``; its persistent shell is a
``docker exec -i`` process. Its files are the same host directories the bubblewrap
backend uses, bind-mounted, so the file tools and the package cache work unchanged. The
egress proxy listens inside the container's network namespace (found through the
container's pid), which needs a root server and a local engine; with a remote engine
sandboxes have no network. The Docker socket is never mounted into a container.

Without ``sandbox_docker_image``, the image is a skeleton made here (no registry pull:
just the mount points and the ``/bin``-style links) and the host's ``/usr`` and ``/etc``
are mounted read-only, the same view as the bubblewrap backend. With an image,
its own root is used, read-only; it needs ``/bin/bash`` and ``sleep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from agenthost.sandbox.base import SandboxSpec, SandboxUnavailable
from agenthost.sandbox.cgroups import identity_alive, server_identity
from agenthost.sandbox.directories import MEMORY, OUTPUTS, SKILLS, UPLOADS, SessionDirs
from agenthost.sandbox.host import CA_BUNDLE, HostBackend, HostSandbox, SandboxConfig, log
from agenthost.sandbox.packages import MOUNT
from agenthost.sandbox.rooted import WORKSPACE

SKELETON_IMAGE = "agenthost-hostroot:1"
_SKELETON_DIRS = ("usr", "etc", "opt", "tmp", "workspace", "mnt", "mnt/session", "proc", "dev", "sys")
_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class DockerUnavailable(Exception):
    """No Docker CLI, or no engine answering; the message says how to fix it."""


def probe(docker_host: str | None) -> str:
    """The docker CLI, after checking that the engine answers."""
    binary = shutil.which("docker")
    if binary is None:
        raise DockerUnavailable("the docker CLI is not installed (Debian: `apt-get install docker.io`)")
    result = subprocess.run(
        [binary, *_host_args(docker_host), "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise DockerUnavailable(f"no Docker engine answers ({result.stderr.strip() or result.stdout.strip()})")
    return binary


def _host_args(docker_host: str | None) -> list[str]:
    return ["--host", docker_host] if docker_host else []


def skeleton() -> bytes:
    """A tar of an empty root: mount points and the links merged-/usr systems have."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in _SKELETON_DIRS:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for name in _LINKS:
            host = Path("/") / name
            if host.is_symlink():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(host)
                tar.addfile(info)
    return buffer.getvalue()


class DockerSandbox(HostSandbox):
    """One session's container with its persistent shell."""

    backend: DockerBackend
    container: str | None = None

    def _run_argv(self, name: str, packages: Path | None) -> list[str]:
        config, limits = self.backend.config, self.backend.config.limits
        argv = [
            "run", "--detach", "--name", name,
            "--label", f"agenthost.sandboxes={self.backend.root}",
            "--label", f"agenthost.server={server_identity()}",
            "--network", "none", "--hostname", "sandbox",
            "--read-only", "--tmpfs", f"/tmp:rw,exec,size={config.tmp_bytes},mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--user", f"{self.uid}:{self.uid}",
            "--pids-limit", str(limits.pids),
            "--memory", str(limits.memory_bytes), "--memory-swap", str(limits.memory_bytes),
            "--cpus", str(limits.cpus),
            "--ulimit", f"nofile={config.open_files}:{config.open_files}", "--ulimit", "core=0:0",
            "--volume", f"{self.dirs.workspace}:{WORKSPACE}",
            "--volume", f"{self.dirs.outputs}:{OUTPUTS}",
            "--volume", f"{self.dirs.uploads}:{UPLOADS}:ro",
            "--volume", f"{self.dirs.memory}:{MEMORY}:ro",
            "--volume", f"{self.dirs.skills}:{SKILLS}:ro",
            "--workdir", WORKSPACE,
        ]  # fmt: skip
        for mount in self.spec.memory:
            mode = "rw" if mount.writable else "ro"
            argv += ["--volume", f"{self.dirs.memory / mount.slug}:{MEMORY}/{mount.slug}:{mode}"]
        if packages is not None:
            argv += ["--volume", f"{packages}:{MOUNT}:{'rw' if self.build_into else 'ro'}"]
        if self.ca_bundle is not None:
            argv += ["--volume", f"{self.ca_bundle}:{CA_BUNDLE}:ro"]
        if self.backend.image is None:
            argv += ["--volume", "/usr:/usr:ro", "--volume", "/etc:/etc:ro"]
        for key, value in self.environment().items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.backend.image or SKELETON_IMAGE, "sleep", "infinity"]

    async def _launch(self) -> asyncio.subprocess.Process:
        packages = await self.packages()
        # Names are fixed per session (or per build directory): a leftover of a launch that was cut off is
        # found and removed by the next one.
        name = f"agenthost-{self.build_into.name if self.build_into else self.spec.session_id}"
        await self.backend.docker("rm", "--force", name, check=False)  # a leftover of this session
        self.container = name
        try:
            await self.backend.docker(*self._run_argv(name, packages))
            if self.backend.network:
                pid = int((await self.backend.docker("inspect", "--format", "{{.State.Pid}}", name)).strip())
                await self.open_proxy(pid)
            return await asyncio.create_subprocess_exec(
                *self.backend.cli,
                "exec",
                "--interactive",
                name,
                *self.backend.config.shell(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            await self._remove()
            raise

    async def _teardown(self, shell: asyncio.subprocess.Process) -> None:
        await self._remove()  # every process of the container, setsid ones included
        with contextlib.suppress(ProcessLookupError):
            shell.kill()

    async def _remove(self) -> None:
        name, self.container = self.container, None
        if name is not None:
            # Not cancellable: a teardown cut short would leave the container running.
            await asyncio.shield(self.backend.docker("rm", "--force", name, check=False, timeout=60))
        await self.close_proxy()


class DockerBackend(HostBackend):
    """Makes hardened Docker containers (see the module docstring)."""

    name = "docker"

    def __init__(self, root: Path, config: SandboxConfig, *, image: str | None, docker_host: str | None):
        self.cli = [probe(docker_host), *_host_args(docker_host)]
        local_engine = docker_host is None or docker_host.startswith("unix://")
        root_server = os.geteuid() == 0
        super().__init__(root, config, switch_user=root_server, network=root_server and local_engine)
        self.image = image
        if not self.network:
            log.warning("sandboxes get no network: the egress proxy needs a root server and a local Docker engine")
        if image is None:
            self._import_skeleton()

    def _import_skeleton(self) -> None:
        found = subprocess.run([*self.cli, "image", "inspect", SKELETON_IMAGE], capture_output=True, check=False)
        if found.returncode != 0:
            made = subprocess.run(
                [*self.cli, "import", "-", SKELETON_IMAGE], input=skeleton(), capture_output=True, check=False
            )
            if made.returncode != 0:
                raise DockerUnavailable(f"cannot create the {SKELETON_IMAGE} image: {made.stderr.decode().strip()}")

    async def docker(self, *args: str, check: bool = True, timeout: float = 120.0) -> str:
        """Run a docker CLI command; SandboxUnavailable with its message when it fails and ``check``.

        A command that outlives ``timeout`` (a stuck engine) or whose caller is cancelled is killed.
        """
        process = await asyncio.create_subprocess_exec(
            *self.cli, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
            if isinstance(exc, TimeoutError):
                raise SandboxUnavailable(f"docker {args[0]} did not answer within {timeout:.0f} s") from None
            raise
        if check and process.returncode != 0:
            raise SandboxUnavailable(f"docker {args[0]} failed: {err.decode(errors='replace').strip()}")
        return out.decode()

    def _make(self, spec: SandboxSpec, dirs: SessionDirs, uid: int, build_into: Path | None = None) -> DockerSandbox:
        return DockerSandbox(self, spec, dirs, uid, build_into)

    async def _reconcile_processes(self) -> None:
        """Remove containers of this sandbox root whose server process is gone."""
        listing = await self.docker(
            "ps", "--all", "--filter", f"label=agenthost.sandboxes={self.root}",
            "--format", '{{.Names}} {{.Label "agenthost.server"}}',
            check=False,
        )  # fmt: skip
        for line in listing.splitlines():
            name, _, server = line.partition(" ")
            if server and not identity_alive(server):
                await self.docker("rm", "--force", name, check=False)
