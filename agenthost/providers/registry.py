"""Which provider answers an agent's model (layer 1): a registry chosen by model id.

Routes are tried in order; a route's pattern is a model id or a glob (``ollama/*``). An id
that no route matches goes to the default provider, which today answers every id.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from agenthost.providers.base import ModelProvider


class Providers:
    """The server's model providers, keyed by the model ids they serve."""

    def __init__(self, default: ModelProvider, routes: Sequence[tuple[str, ModelProvider]] = ()):
        self.default = default
        self._routes = list(routes)

    def for_model(self, model_id: str) -> ModelProvider:
        for pattern, provider in self._routes:
            if fnmatchcase(model_id, pattern):
                return provider
        return self.default

    async def close(self) -> None:
        closed: list[ModelProvider] = []
        for provider in [self.default, *(provider for _, provider in self._routes)]:
            if not any(provider is done for done in closed):
                closed.append(provider)
                await provider.close()
