"""API-key authentication (layer 4).

The key comes as ``x-api-key`` or ``Authorization: Bearer``; either names one
workspace. The check runs in the request middleware, before any body is read, so an
unauthenticated client gets 401 whatever it sends. Verified keys are remembered for
``auth_cache_seconds`` so the hot path does not hit the database on every request.

An *environment key* (``agenthost keys create --environment ENV``) is what a self-hosted
environment's worker holds: it may use that environment's work endpoints and read and
answer the sessions of that environment, and read the workspace's skill versions (to mount
them), nothing else (``check_environment_key``).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.datastructures import Headers

from agenthost.errors import AuthenticationFailed, NotFound, PermissionDenied
from agenthost.store.sql import Caller

Lookup = Callable[[str], Awaitable[Caller | None]]
WORKSPACE = "agenthost.workspace"
CALLER = "agenthost.caller"
_WORK_PATH = re.compile(r"^/v1/environments/([^/]+)/work(/[^/]+)*$")
_SESSION_PATH = re.compile(r"^/v1/sessions/([^/]+)(/.*)?$")
_WORKER_READS = (None, "/events", "/events/stream")  # a session's own paths an environment key may GET
# The SDK worker fetches the custom skills of the sessions it runs: versions.retrieve, then download.
_SKILL_VERSION_PATH = re.compile(r"^/v1/skills/[^/]+/versions/[^/]+(/content)?$")


class Authenticator:
    """Maps a presented key to its workspace, or refuses it."""

    def __init__(self, lookup: Lookup, cache_seconds: float, static_key: str | None, static_workspace: Caller):
        self._lookup = lookup
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Caller, float]] = {}
        self._static_key = static_key.encode() if static_key else None
        self._static_workspace = static_workspace

    async def caller_for(self, key: str) -> Caller:
        if self._static_key is not None and hmac.compare_digest(key.encode(), self._static_key):
            return self._static_workspace
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        caller = await self._lookup(key)
        if caller is None:
            self._cache.pop(key, None)
            raise AuthenticationFailed("invalid x-api-key or Authorization bearer token")
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (caller, now + self._cache_seconds)
        return caller

    async def authenticate(self, headers: Headers) -> Caller:
        """Who a request's key speaks for; 401 without a valid key, 403 on a foreign workspace header."""
        caller = await self.caller_for(presented_key(headers))
        wanted = headers.get("anthropic-workspace-id")
        if wanted and wanted not in (caller.workspace_id, caller.workspace):
            raise PermissionDenied("anthropic-workspace-id: this API key does not belong to that workspace")
        return caller


async def check_environment_key(
    caller: Caller, method: str, path: str, session_environment: Callable[[str, str], Awaitable[str]]
) -> None:
    """Refuse what is not an environment key's worker's business (its work items, its sessions).

    ``session_environment(workspace_id, session_id)`` is the session's environment (404 when unknown).
    What lies in another environment is a 404 exactly like an unknown id, so the key cannot learn
    which ids exist; what it may see but not do is a 403.
    """
    environment_id = caller.environment_id
    if environment_id is None:
        return
    work = _WORK_PATH.match(path)
    if work is not None:
        if work.group(1) != environment_id:
            raise NotFound(f"environment {work.group(1)!r} not found")
        return
    if method == "GET" and _SKILL_VERSION_PATH.match(path):
        return  # reading the workspace's skill versions, as a worker must
    session = _SESSION_PATH.match(path)
    if session is not None and await session_environment(caller.workspace_id, session.group(1)) != environment_id:
        raise NotFound(f"session {session.group(1)!r} not found")
    if session is not None and (
        (method == "GET" and session.group(2) in _WORKER_READS) or (method == "POST" and session.group(2) == "/events")
    ):
        return
    raise PermissionDenied(
        f"this environment key acts only as the worker of environment {environment_id}: its work items and "
        "the sessions it runs; use an API key for anything else"
    )


def presented_key(headers: Headers) -> str:
    """The key a request carries; 401 when there is none."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise AuthenticationFailed("missing API key: send x-api-key or Authorization: Bearer <key>")


async def workspace(request: Request) -> str:
    """FastAPI dependency: the caller's workspace id, as the middleware established it."""
    return request.scope[WORKSPACE]
