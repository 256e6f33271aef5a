"""Metrics of a process put to use (layer 5): fed by its bus, and served by a worker that has no API.

An API process serves ``/metrics`` on its own port (``api/metrics.py``). ``agenthost worker``
serves no API, so with metrics on it listens on ``metrics_port`` for ``/metrics`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from agenthost import serving
from agenthost.api import errors
from agenthost.api import metrics as api_metrics
from agenthost.metrics import Metrics
from agenthost.settings import Settings
from agenthost.store.sql import Store

log = logging.getLogger("agenthost")


def observed(store: Store, settings: Settings) -> Metrics | None:
    """This process's metrics, fed by every batch of events it commits, when the settings turn them on."""
    if not settings.metrics:
        return None
    metrics = Metrics()
    store.bus.observe(metrics.observe)
    return metrics


async def serve_metrics(settings: Settings, metrics: Metrics | None) -> MetricsServer | None:
    """A worker's ``/metrics`` on ``metrics_port`` (bound before the engine starts: a taken port fails the start)."""
    if metrics is None:
        return None
    if settings.metrics_port is None:
        log.warning("agenthost: AGENTHOST_METRICS is on but this worker has no AGENTHOST_METRICS_PORT: not served")
        return None
    app = FastAPI(title="agenthost worker metrics", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings, app.state.metrics = settings, metrics
    errors.install(app)
    app.include_router(api_metrics.router)
    exporter = MetricsServer(app, settings.model_copy(update={"port": settings.metrics_port}))
    await exporter.start()
    return exporter


class _InLoopServer(uvicorn.Server):
    """uvicorn inside a loop that is not its own: the worker's signal handlers stay the worker's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsServer:
    """A small HTTP server in the worker's loop, serving only ``/metrics``."""

    def __init__(self, app: FastAPI, settings: Settings):
        self._server = _InLoopServer(serving.config(app, settings, loop="asyncio"))
        self._socket = serving.listen(settings)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="metrics-server")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
