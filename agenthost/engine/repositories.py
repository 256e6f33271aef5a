"""A session's GitHub repository resources, cloned into its workspace (layer 3).

Before a session's first tool call that uses the sandbox, the server clones each repository
resource with the ``git`` command line, in a staging directory of the session's own directory
that the sandbox never sees, checks out the branch or commit asked for, then hands the tree to
the sandbox's uid and moves it to its mount path (``/workspace/<repo>`` by default). A manifest
beside the session's directories (``repositories.json``) remembers which resources were cloned,
so each is cloned once.

The token never enters the sandbox: git gets it only through its environment (``GIT_CONFIG_*``:
an ``http.extraHeader`` of ``Authorization: Basic base64(x-access-token:<token>)``), never on a
command line, in the URL or in the clone's ``.git/config``, whose ``origin`` is the resource's
``https://github.com/...`` URL. System and user git configuration, credential helpers and prompts
are switched off, so the clone uses nothing but the resource's own token.

A clone that fails is a ``session.error`` of one of the five repository error types (listed in
docs/repositories.md) with ``retry_status: retrying``: the turn goes on without the repository,
and the next turn tries again (a failed repository is not retried within the turn that saw it fail).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

import sqlalchemy as sa

from agenthost.engine.manifests import read_manifest, write_manifest
from agenthost.errors import InvalidRequest
from agenthost.sandbox.base import Sandbox
from agenthost.schemas.common import JSON
from agenthost.schemas.resources import GITHUB, WORKSPACE
from agenthost.store.db import Database
from agenthost.store.repositories import Repository, repositories
from agenthost.store.tables import sessions
from agenthost.store.vaults import Vaults

log = logging.getLogger("agenthost.engine")

CLONE_TIMEOUT_SECONDS = 600.0
"""How long all git commands of one repository's clone may take together."""
MANIFEST = "repositories.json"
STAGING = "repositories.partial"


class CloneFailed(Exception):
    """A repository could not be cloned: the repository error type and a message."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class SessionRepositories:
    """Clones one session's repository resources into its sandbox's workspace, for the run that holds it."""

    def __init__(self, db: Database, vaults: Vaults | None, session_id: str, github_url: str):
        self.db = db
        self.vaults = vaults
        self.session_id = session_id
        self.github_url = github_url.rstrip("/")
        self._turn: int | None = None  # the turn (its running_since) the failures below belong to
        self._failed: set[str] = set()
        self._complete = False  # every repository is cloned (or there are none): nothing more to read

    async def clone(self, sandbox: Sandbox, resources: list[JSON]) -> list[JSON]:
        """Clone the repositories not cloned yet; return a ``session.error`` payload for each that failed.

        ``resources``: the session's, as the run last read them; without a repository among them there
        is nothing to read (one may be added later: the next call looks again).
        """
        if self._complete or not any(r["type"] == "github_repository" for r in resources):
            return []
        workspace = sandbox.files.host_dir(WORKSPACE)
        if workspace is None:
            self._complete = True
            return []
        running_since, found = await self.db.run_read(self._read)
        if running_since != self._turn:  # a new turn tries the failed ones again
            self._turn, self._failed = running_since, set()
        root = workspace.parent
        cloned = await asyncio.to_thread(read_manifest, root / MANIFEST)
        errors: list[JSON] = []
        for repository in found:
            resource_id, url = repository.resource["id"], repository.resource["url"]
            if resource_id in cloned or resource_id in self._failed:
                continue
            try:
                await self._clone(repository, sandbox, root)
            except CloneFailed as failure:
                self._failed.add(resource_id)
                log.warning("cloning %s for %s failed: %s", url, self.session_id, failure.message)
                errors.append(_error(failure, url))
                continue
            cloned[resource_id] = repository.resource["mount_path"]
            await asyncio.to_thread(write_manifest, root / MANIFEST, cloned)
            log.info("cloned %s into %s for %s", url, repository.resource["mount_path"], self.session_id)
        self._complete = all(r.resource["id"] in cloned for r in found)
        return errors

    def _read(self, conn: sa.Connection) -> tuple[int | None, list[Repository]]:
        row = conn.execute(
            sa.select(sessions.c.resources, sessions.c.running_since).where(sessions.c.id == self.session_id)
        ).one()
        try:
            sealer = self.vaults.sealer if self.vaults is not None else None
        except InvalidRequest:  # no secret key: no token can be opened (none could have been stored)
            sealer = None
        return row.running_since, repositories(conn, self.session_id, list(row.resources), sealer)

    async def _clone(self, repository: Repository, sandbox: Sandbox, root: Path) -> None:
        resource = repository.resource
        if repository.unreadable:
            raise CloneFailed(
                "repository_authentication_error",
                f"the authorization_token of {resource['url']} was sealed with another server key; "
                "set it again with resources.update",
            )
        staging = root / STAGING / resource["id"]
        try:
            await asyncio.to_thread(_fresh, staging)
            async with asyncio.timeout(CLONE_TIMEOUT_SECONDS):
                await self._fetch(resource, repository.token, staging)
            await asyncio.to_thread(_hand_over, staging, repository.token, sandbox.files.owner)
            try:
                await asyncio.to_thread(sandbox.files.move_in, staging, resource["mount_path"])
            except OSError as exc:
                raise CloneFailed(
                    "repository_clone_error",
                    f"{resource['url']} was cloned but could not be placed at {resource['mount_path']}: "
                    f"{exc.strerror or exc}",
                ) from None
        except TimeoutError:
            raise CloneFailed(
                "repository_clone_error",
                f"cloning {resource['url']} took longer than {CLONE_TIMEOUT_SECONDS:.0f} seconds; stopped",
            ) from None
        except OSError as exc:  # git missing, a full disk ...
            raise CloneFailed("repository_clone_error", f"cloning {resource['url']} failed: {exc}") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _fetch(self, resource: JSON, token: str | None, into: Path) -> None:
        """Clone into ``into`` and check out what the resource asks for."""
        url = resource["url"]
        source = self.github_url + url[len(GITHUB) :]
        git = _Git(_environment(token), token, self.github_url, url)
        checkout = resource.get("checkout")
        if checkout is None:
            await git.run(["clone", "--", source, str(into)])
        elif checkout["type"] == "branch":
            await git.run(["clone", f"--branch={checkout['name']}", "--", source, str(into)], checkout)
        else:
            sha = checkout["sha"]
            await git.run(["clone", "--no-checkout", "--", source, str(into)])
            if not await git.succeeds(["-C", str(into), "cat-file", "-e", f"{sha}^{{commit}}"]):
                await git.run(["-C", str(into), "fetch", "--", "origin", sha], checkout)
            await git.run(["-C", str(into), "-c", "advice.detachedHead=false", "checkout", "--detach", sha], checkout)
        # The clone's origin is the resource's own URL, whatever host the server cloned from.
        await git.run(["-C", str(into), "remote", "set-url", "origin", url])


class _Git:
    """Runs git for one clone and turns its failures into repository errors."""

    def __init__(self, env: dict[str, str], token: str | None, base: str, url: str):
        self.env = env
        self.secrets = [s for s in (token, token and _basic(token)) if s]
        self.base = base
        self.url = url

    async def succeeds(self, args: list[str]) -> bool:
        return (await self._exec(args))[0] == 0

    async def run(self, args: list[str], checkout: JSON | None = None) -> None:
        code, stderr = await self._exec(args)
        if code != 0:
            raise self._failure(stderr, checkout)

    async def _exec(self, args: list[str]) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            start_new_session=True,  # its remote helpers go with it when it is stopped
        )
        try:
            _, stderr = await process.communicate()
        finally:
            if process.returncode is None:  # timed out or cancelled (an interrupt)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        return int(process.returncode or 0), stderr.decode(errors="replace")

    def _failure(self, stderr: str, checkout: JSON | None) -> CloneFailed:
        lower = stderr.lower()
        said = self._last_line(stderr)
        if checkout is not None and (
            "remote branch" in lower
            or "not our ref" in lower
            or "couldn't find remote ref" in lower
            or "reference is not a tree" in lower
            or "did not match any" in lower
            or "unable to read tree" in lower
        ):
            wanted = f"branch {checkout['name']!r}" if checkout["type"] == "branch" else f"commit {checkout['sha']}"
            return CloneFailed("repository_checkout_error", f"{wanted} of {self.url} could not be checked out: {said}")
        if any(
            sign in lower
            for sign in ("authentication failed", "could not read username", "could not read password", "error: 401")
        ):
            return CloneFailed(
                "repository_authentication_error",
                f"GitHub refused the credentials for {self.url} (check the resource's authorization_token): {said}",
            )
        if "error: 403" in lower:
            return CloneFailed("repository_forbidden_error", f"the token may not read {self.url}: {said}")
        if "repository not found" in lower or "error: 404" in lower or "not found" in lower:
            return CloneFailed("repository_not_found_error", f"{self.url} was not found: {said}")
        return CloneFailed("repository_clone_error", f"cloning {self.url} failed: {said}")

    def _last_line(self, stderr: str) -> str:
        """Git's own words, without the host the server cloned from, and never a secret."""
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        text = (lines[-1] if lines else "git exited with an error")[:300]
        text = text.replace(self.base, GITHUB)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _basic(token: str) -> str:
    return base64.b64encode(f"x-access-token:{token}".encode()).decode()


def _environment(token: str | None) -> dict[str, str]:
    """git's environment: the server's, without any git settings of its own, plus the token's header."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_") and name != "SSH_ASKPASS"}
    config = [("credential.helper", ""), ("core.hooksPath", os.devnull)]
    if token is not None:
        config.append(("http.extraHeader", f"Authorization: Basic {_basic(token)}"))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    env |= {
        "GIT_CONFIG_COUNT": str(len(config)),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "http:https",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    return env


def _error(failure: CloneFailed, url: str) -> JSON:
    error = {
        "type": failure.kind,
        "message": failure.message,
        "repository_url": url,
        "retry_status": {"type": "retrying"},  # the next turn clones again
    }
    return {"type": "session.error", "error": error}


def _fresh(staging: Path) -> None:
    """An empty staging directory (what a run that died mid-clone left is removed)."""
    staging.parent.mkdir(mode=0o700, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


def _hand_over(clone: Path, token: str | None, owner: tuple[int, int] | None) -> None:
    """Check that the clone's git configuration holds no credential, then give the tree to the sandbox's uid."""
    config = (clone / ".git" / "config").read_text(errors="replace")
    if "extraheader" in config.lower() or "authorization" in config.lower() or (token and token in config):
        raise CloneFailed("repository_clone_error", "the clone's git configuration holds a credential; not mounted")
    if owner is None:
        return
    os.chown(clone, *owner)
    for directory, dirs, files in os.walk(clone):  # never follows the repository's symlinks
        for name in (*dirs, *files):
            os.chown(os.path.join(directory, name), *owner, follow_symlinks=False)
