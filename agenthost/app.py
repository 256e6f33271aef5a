"""The composition root (layer 5): ``create_app`` builds the store and mounts the API.

Nothing is built at import time; a test builds its own app from its own Settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from agenthost.api import (
    agents,
    environments,
    errors,
    events,
    files,
    health,
    memory_stores,
    openapi,
    sessions,
    skills,
    unserved,
    vaults,
    work,
)
from agenthost.api import metrics as api_metrics
from agenthost.api.auth import Authenticator
from agenthost.api.metrics import CountRequests
from agenthost.api.middleware import RequestContext
from agenthost.api.stream_limits import StreamLimits
from agenthost.engine.dispatch import Engine
from agenthost.engine.loop import Stores
from agenthost.engine.reaper import reap_forever
from agenthost.errors import Unavailable
from agenthost.exporter import observed, serve_metrics
from agenthost.metrics import Metrics
from agenthost.providers.anthropic import AnthropicProvider
from agenthost.providers.base import ModelProvider
from agenthost.providers.registry import Providers
from agenthost.sandbox.base import SandboxBackend
from agenthost.sandbox.bwrap import BwrapBackend, BwrapUnavailable
from agenthost.sandbox.cgroups import Limits
from agenthost.sandbox.docker import DockerBackend, DockerUnavailable
from agenthost.sandbox.host import SandboxConfig
from agenthost.sandbox.local import LocalBackend
from agenthost.settings import Settings
from agenthost.store.db import Database
from agenthost.store.keys import DEFAULT_WORKSPACE, Caller
from agenthost.store.secrets import check_key, load_or_create_key
from agenthost.store.sql import Store

log = logging.getLogger("agenthost")


def _announce_key(key: str) -> None:
    print(
        "\nagenthost: no API key existed, so one was created for the default workspace.\n"
        f"  {key}\n"
        "It is shown only this once; keep it. Make more with `agenthost keys create`.\n",
        file=sys.stderr,
        flush=True,
    )


async def first_key(store: Store, settings: Settings, announce: Callable[[str], None] = _announce_key) -> None:
    """Create and announce the first key when none exists and none is configured: the last step of a start
    that succeeded, so a start that fails never shows a key that is then lost."""
    if settings.api_key is None and not await store.keys.any_exist():
        key, _ = await store.keys.create(DEFAULT_WORKSPACE)
        announce(key)


async def _database_error(request: Request, exc: Exception) -> Response:
    """A dropped database connection is a 503 the client may retry; any other database error is a bug (500)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return await errors.handle(request, Unavailable("database connection lost; retry the request"))
    return await errors.handle(request, exc)


def build_sandboxes(settings: Settings) -> SandboxBackend:
    """The configured sandbox backend; SystemExit with the fix when bubblewrap cannot run here."""
    root = settings.resolved_sandbox_dir()
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
    except OSError as exc:
        raise SystemExit(
            f"agenthost: cannot make the sandbox directory {root}: {exc.strerror or exc}; "
            "set AGENTHOST_SANDBOX_DIR to a directory this user can write"
        ) from None
    if settings.sandbox == "local":
        log.warning("AGENTHOST_SANDBOX=local: tools run with NO isolation, as the server's own user")
        return LocalBackend(root)
    config = SandboxConfig(
        Limits(settings.sandbox_memory_mb << 20, settings.sandbox_pids, settings.sandbox_cpus),
        tmp_bytes=settings.sandbox_tmp_mb << 20,
        trusted_hosts={host.lower(): address for host, address in settings.sandbox_trusted_hosts.items()},
        upstream_ca_file=settings.sandbox_upstream_ca_file,
        mirrors={
            manager: url
            for manager, url in (("pip", settings.sandbox_pip_index_url), ("npm", settings.sandbox_npm_registry))
            if url
        },
    )
    try:
        if settings.sandbox == "docker":
            return DockerBackend(
                root, config, image=settings.sandbox_docker_image, docker_host=settings.sandbox_docker_host
            )
        return BwrapBackend(root, config)
    except (BwrapUnavailable, DockerUnavailable) as exc:
        raise SystemExit(f"agenthost: {exc}") from None


def build_engine(
    settings: Settings,
    store: Store,
    provider: ModelProvider | None,
    sandboxes: SandboxBackend,
    metrics: Metrics | None = None,
) -> Engine:
    """The engine with the configured providers and this sandbox backend (``provider``: one for every model)."""
    if provider is None:
        provider = AnthropicProvider()
        if missing := provider.missing_credentials:
            log.warning("agenthost: %s is not set: every model call will fail until it is", missing)
    return Engine(
        store.db,
        store.bus,
        Providers(provider),
        sandboxes,
        settings,
        Stores(store.files, store.vaults, store.skills),
        metrics,
    )


def _freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, tables, models) out of the collector's way.

    Those objects live as long as the process; leaving them in the oldest generation made every full
    collection walk them, and such collections stalled turns by ~100 ms now and then
    (docs/benchmarks.md, session 3).
    """
    gc.collect()
    gc.freeze()


def make_data_dir(settings: Settings) -> None:
    """The data directory, made private when missing; SystemExit naming the fix when it cannot be used."""
    try:
        path = settings.make_data_dir()
        probe = path / f".agenthost-write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SystemExit(
            f"agenthost: cannot use the data directory {settings.resolved_data_dir()}: {exc.strerror or exc}; "
            "set AGENTHOST_DATA_DIR to a directory this user can write"
        ) from None


async def check_database(settings: Settings) -> None:
    """SystemExit naming the fix unless the configured PostgreSQL answers (SQLite needs only the data directory)."""
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        return
    database = Database(url)
    try:
        await database.ping()
    except Unavailable as exc:
        raise SystemExit(
            f"agenthost: cannot reach the database at {safe_url(url)} ({exc.message}); "
            "is PostgreSQL running there? Set AGENTHOST_DATABASE_URL to reach it"
        ) from None
    finally:
        await database.close()


def safe_url(url: str) -> str:
    """A database URL fit for a log line: its credentials hidden."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def needs_shared_database(settings: Settings, role: str) -> None:
    """SystemExit unless the store is PostgreSQL: processes in separate roles meet only through it."""
    if settings.resolved_database_url().startswith("sqlite"):
        raise SystemExit(
            f"agenthost: {role} runs beside other agenthost processes and needs PostgreSQL "
            "(set AGENTHOST_DATABASE_URL=postgresql://...); with SQLite run `agenthost serve`, which has both parts"
        )


async def _stop_engine(engine: Engine) -> None:
    await engine.stop()
    await engine.sandboxes.close()
    await engine.providers.close()


async def run_worker(
    settings: Settings,
    stop: asyncio.Event,
    *,
    provider: ModelProvider | None = None,
    ready: Callable[[str], None] = lambda owner: None,
) -> None:
    """``agenthost worker``: an engine without the API, until ``stop`` is set; then its leases are handed back.

    ``ready`` gets the engine's owner name once it listens and claims.
    """
    needs_shared_database(settings, "agenthost worker")
    make_data_dir(settings)
    sandboxes = build_sandboxes(settings)
    store = open_store(settings)
    metrics = observed(store, settings)
    try:
        await store.open()
        engine = build_engine(settings, store, provider, sandboxes, metrics)
        exporter = await serve_metrics(settings, metrics)
        try:
            await store.listen([engine.on_notification], settings.notify_check_seconds)
            await engine.start()
            _freeze_startup_objects()
            ready(engine.owner)
            await stop.wait()
        finally:
            if exporter is not None:
                await exporter.stop()
            await store.stop_listening()
            await _stop_engine(engine)
    finally:
        await store.close()


def open_store(settings: Settings) -> Store:
    """The store as the settings describe it (not yet opened: ``Store.open`` migrates)."""
    return Store(
        settings.resolved_database_url(),
        files_dir=settings.resolved_files_dir(),
        secret_key=secret_key(settings),
        work_lease_seconds=settings.work_lease_seconds,
        pool_size=settings.database_pool_size,
        pool_overflow=settings.database_pool_overflow,
        retry_seconds=settings.database_retry_seconds,
    )


def secret_key(settings: Settings) -> bytes:
    """The key that seals credential secrets: the configured one, else the data directory's (made once)."""
    if settings.secret_key is not None:
        return check_key(settings.secret_key.get_secret_value().encode())
    return load_or_create_key(settings.resolved_data_dir() / "secret.key")


async def _purge_files_forever(store: Store, interval: float = 60.0) -> None:
    """Delete expired files, and bytes and skill archives a crash left without a record, once a minute."""
    while True:
        try:
            await store.files.purge()
            await store.skills.purge()
        except Exception:
            log.exception("purging expired files failed; trying again")
        await asyncio.sleep(interval)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    provider: ModelProvider | None = None,
    engine: bool = True,
) -> FastAPI:
    """Build the ASGI app. The store is opened (and migrated) and the engine started in the app's lifespan.

    ``engine=False`` serves the API only (``serve --no-engine``): engines in other processes run the
    turns, told through PostgreSQL notifications.
    """
    settings = settings or Settings()
    if not engine:
        needs_shared_database(settings, "serve --no-engine")
    make_data_dir(settings)
    sandboxes = build_sandboxes(settings) if engine else None  # before anything is written: it may refuse
    store = store or open_store(settings)
    metrics = observed(store, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        default_workspace = Caller(await store.keys.workspace_id(DEFAULT_WORKSPACE), DEFAULT_WORKSPACE)
        static_key = settings.api_key.get_secret_value() if settings.api_key else None
        app.state.authenticator = Authenticator(
            store.keys.authenticate, settings.auth_cache_seconds, static_key, default_workspace
        )
        running = build_engine(settings, store, provider, sandboxes, metrics) if sandboxes is not None else None
        app.state.engine = running
        background: list[asyncio.Task[None]] = []
        try:
            await store.listen([running.on_notification] if running else [], settings.notify_check_seconds)
            if running is not None:
                await running.start()
            _freeze_startup_objects()
            if running is None:  # engines elsewhere claim expired runs; without any, sessions must read rescheduling
                background.append(asyncio.create_task(reap_forever(store.db, store.bus, settings.engine_poll_seconds)))
            background.append(asyncio.create_task(_purge_files_forever(store)))
            await first_key(store, settings)
            yield
        finally:
            await store.stop_listening()  # nothing more reaches the engine while it stops
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if running is not None:
                await _stop_engine(running)
            await store.close()

    app = FastAPI(title="agenthost", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.metrics = metrics
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.store = store
    app.state.stream_limits = limits = StreamLimits(settings.max_streams_per_key)
    if metrics is not None:
        metrics.gauge("agenthost_streams_open", "Event streams open on this server", limits.open_streams)
    errors.install(app)
    app.add_exception_handler(DBAPIError, _database_error)
    for module in (
        health,
        agents,
        environments,
        work,
        sessions,
        events,
        files,
        vaults,
        skills,
        memory_stores,
        unserved,
    ):
        app.include_router(module.router)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_file_bytes,
        max_skill_bytes=settings.max_skill_bytes,
        body_timeout=settings.body_timeout_seconds,
    )
    if metrics is not None:
        app.include_router(api_metrics.router)
        app.add_middleware(CountRequests, metrics=metrics)  # outermost: refusals are counted too
    return app
