"""FastAPI dependencies shared by the resource routers (layer 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from agenthost.api.auth import workspace

if TYPE_CHECKING:
    from agenthost.store.sql import Store

Workspace = Annotated[str, Depends(workspace)]


def store(request: Request) -> Store:
    """The store built by ``create_app``."""
    return request.app.state.store
