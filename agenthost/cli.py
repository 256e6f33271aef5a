"""The `agenthost` command (layer 5): thin over Settings, the store and the app."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
import uvicorn
import uvloop
from pydantic import ValidationError

from agenthost import serving
from agenthost.app import check_database, create_app, run_worker, safe_url
from agenthost.errors import AgentHostError, NotFound
from agenthost.settings import Settings
from agenthost.store.keys import DEFAULT_WORKSPACE
from agenthost.store.sql import Store

app = typer.Typer(help="agenthost: a self-hosted Claude Managed Agents server.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")

T = TypeVar("T")


def _with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = Store(_settings().resolved_database_url())
        try:
            await store.open()
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default AGENTHOST_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default AGENTHOST_PORT or 8000).")] = None,
    engine: Annotated[
        bool,
        typer.Option(
            "--engine/--no-engine",
            help="Run turns in this process too (the default). --no-engine serves the API only, beside "
            "`agenthost worker` processes on one PostgreSQL.",
        ),
    ] = True,
) -> None:
    """Start the HTTP API and the engine with the embedded defaults (SQLite in the data directory).

    Every check runs before anything is written (the settings, the port, the database, the data
    directory, the sandbox backend); a failed one stops the start with one line naming the fix.
    """
    settings = _settings(host=host, port=port)
    listening = serving.listen(settings)
    asyncio.run(check_database(settings))  # PostgreSQL; create_app checks the rest
    application = create_app(settings, engine=engine)
    role = "" if engine else " (API only)"
    typer.echo(
        f"agenthost: serving{role} on http://{settings.host}:{settings.port} "
        f"(store: {safe_url(settings.resolved_database_url())})",
        err=True,
    )
    uvicorn.Server(serving.config(application, settings)).run(sockets=[listening])


@app.command()
def worker() -> None:
    """Run turns without serving the API: an engine beside `serve` or `serve --no-engine` processes.

    Any number of workers share the sessions of one PostgreSQL store. SIGTERM or SIGINT stops
    claiming, cancels the runs in flight and hands their leases back for another engine to finish.
    """
    settings = _settings()
    asyncio.run(check_database(settings))
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.echo(f"agenthost: engine worker (store: {safe_url(settings.resolved_database_url())})", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop, ready=lambda owner: typer.echo(f"agenthost: engine ready ({owner})", err=True))

    uvloop.run(main())


def _settings(**overrides: object) -> Settings:
    """The settings from the environment with the CLI's flags over them; SystemExit naming each bad variable."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = [
            f"AGENTHOST_{str(error['loc'][0]).upper()}={error.get('input')!r}: {error['msg']}" for error in exc.errors()
        ]
        raise SystemExit("agenthost: bad setting: " + "; ".join(problems)) from None
    return settings.model_copy(update={name: value for name, value in overrides.items() if value is not None})


@keys_app.command("create")
def keys_create(
    workspace: Annotated[
        str, typer.Option(help="Workspace the key belongs to; made on first use.")
    ] = DEFAULT_WORKSPACE,
    environment: Annotated[
        str | None,
        typer.Option(
            help="Make an environment key instead: the credential of a self-hosted environment's worker "
            "(its work items and sessions only).",
        ),
    ] = None,
) -> None:
    """Print a new API key (shown only this once)."""
    try:
        if environment is not None:
            key, info = _with_store(lambda store: store.keys.create_for_environment(environment))
        else:
            key, info = _with_store(lambda store: store.keys.create(workspace))
    except AgentHostError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(key)
    scope = f"environment {environment} of workspace {info.workspace!r}" if environment else f"workspace {workspace!r}"
    typer.echo(f"created {info.id} for {scope}", err=True)


@keys_app.command("list")
def keys_list() -> None:
    """List keys, one per line, tab-separated: id, workspace, last characters, created, status."""
    keys = _with_store(lambda store: store.keys.list())
    typer.echo("id\tworkspace\tkey\tcreated\tstatus\tenvironment")
    for key in keys:
        created = datetime.fromtimestamp(key.created_at / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = "revoked" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.workspace}\t...{key.hint}\t{created}\t{status}\t{key.environment_id or '-'}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id, as `keys list` shows it.")]) -> None:
    """Revoke a key; requests with it are refused from then on."""
    try:
        _with_store(lambda store: store.keys.revoke(key_id))
    except NotFound as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"revoked {key_id}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the server also does this at start)."""
    _with_store(lambda store: store.db.ping())  # opening the store migrates it
    typer.echo("database is at the newest schema")
