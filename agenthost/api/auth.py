"""API-key authentication (layer 4; REFERENCE §1.1).

The key comes as ``x-api-key`` or ``Authorization: Bearer``; either names one
workspace. The check runs in the request middleware, before any body is read, so an
unauthenticated client gets 401 whatever it sends. Verified keys are remembered for
``auth_cache_seconds`` so the hot path does not hit the database on every request.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.datastructures import Headers

from agenthost.errors import AuthenticationFailed, PermissionDenied

Workspace = tuple[str, str]
"""A workspace as (id, name)."""

Lookup = Callable[[str], Awaitable[Workspace | None]]
WORKSPACE = "agenthost.workspace"


class Authenticator:
    """Maps a presented key to its workspace, or refuses it."""

    def __init__(self, lookup: Lookup, cache_seconds: float, static_key: str | None, static_workspace: Workspace):
        self._lookup = lookup
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Workspace, float]] = {}
        self._static_key = static_key.encode() if static_key else None
        self._static_workspace = static_workspace

    async def workspace_for(self, key: str) -> Workspace:
        if self._static_key is not None and hmac.compare_digest(key.encode(), self._static_key):
            return self._static_workspace
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        workspace = await self._lookup(key)
        if workspace is None:
            self._cache.pop(key, None)
            raise AuthenticationFailed("invalid x-api-key or Authorization bearer token")
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (workspace, now + self._cache_seconds)
        return workspace

    async def authenticate(self, headers: Headers) -> str:
        """The workspace id of a request's key; 401 without a valid key, 403 on a foreign workspace header."""
        workspace_id, name = await self.workspace_for(presented_key(headers))
        wanted = headers.get("anthropic-workspace-id")
        if wanted and wanted not in (workspace_id, name):
            raise PermissionDenied("anthropic-workspace-id: this API key does not belong to that workspace")
        return workspace_id


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
