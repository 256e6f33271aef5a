"""agenthost: a self-hosted server for the Claude Managed Agents API.

The public surface is small: build the ASGI app with :func:`create_app` from a
:class:`Settings`. Everything else is internal.
"""

from agenthost.app import create_app
from agenthost.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "__version__", "create_app"]
