"""API-key authentication (layer 4; REFERENCE §1.1).

The key comes as ``x-api-key`` or ``Authorization: Bearer``; either names one
workspace. Verified keys are remembered for ``auth_cache_seconds`` so a hot path
does not hit the database on every request.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from fastapi import Request

from agenthost.errors import AuthenticationFailed, PermissionDenied

Lookup = Callable[[str], Awaitable[str | None]]


class Authenticator:
    """Maps a presented key to its workspace id, or refuses it."""

    def __init__(self, lookup: Lookup, cache_seconds: float, static_key: str | None, static_workspace: str | None):
        self._lookup = lookup
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[str, float]] = {}
        self._static_key = static_key
        self._static_workspace = static_workspace

    async def workspace_for(self, key: str) -> str:
        if self._static_key is not None and self._static_workspace is not None:
            if hmac.compare_digest(key.encode(), self._static_key.encode()):
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

    def forget(self) -> None:
        """Drop every remembered key (after a revocation in this process)."""
        self._cache.clear()


def presented_key(request: Request) -> str:
    """The key a request carries; 401 when there is none."""
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise AuthenticationFailed("missing API key: send x-api-key or Authorization: Bearer <key>")


async def workspace(request: Request) -> str:
    """FastAPI dependency: the caller's workspace id."""
    authenticator: Authenticator = request.app.state.authenticator
    workspace_id = await authenticator.workspace_for(presented_key(request))
    wanted = request.headers.get("anthropic-workspace-id")
    if wanted and wanted != workspace_id:
        raise PermissionDenied("anthropic-workspace-id: this API key does not belong to that workspace")
    return workspace_id
