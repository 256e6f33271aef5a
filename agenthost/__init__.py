"""agenthost: a self-hosted server for the Claude Managed Agents API.

The public surface is small: build the ASGI app with :func:`create_app` from a
:class:`Settings`. Everything else is internal.

Both are imported on first use, so a helper process that runs one module (the ``grep``
tool's worker) does not pay for importing the whole server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agenthost.app import create_app
    from agenthost.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from agenthost.app import create_app

        return create_app
    if name == "Settings":
        from agenthost.settings import Settings

        return Settings
    raise AttributeError(f"module 'agenthost' has no attribute {name!r}")
