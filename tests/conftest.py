"""Shared fixtures: a real agenthost server over HTTP on each database, and official SDK clients.

The server runs in uvicorn on an ephemeral loopback port, once per database for the
whole run: SQLite (a file under the run's temp dir) and PostgreSQL (a fresh database on
the server at ``AGENTHOST_TEST_PG_URL``, default ``postgresql://127.0.0.1:5432/test``).
Each test gets its own workspace and key, so tests never see each other's resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anthropic
import httpx2
import pytest
import uvicorn

from agenthost import serving
from agenthost.app import create_app
from agenthost.sandbox.bwrap import BwrapUnavailable, probe
from agenthost.settings import Settings
from agenthost.store.sql import Store
from agenthost.testing.fake_anthropic import FakeAnthropic
from tests.tls import CA_FILE as TEST_CA_FILE

T = TypeVar("T")
PG_URL = os.environ.get("AGENTHOST_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("AGENTHOST_REQUIRE_PG") == "1"
REQUIRE_BWRAP = os.environ.get("AGENTHOST_REQUIRE_BWRAP") == "1"


def _bwrap_problem() -> str | None:
    try:
        probe()
    except BwrapUnavailable as exc:
        return str(exc)
    return None


BWRAP_PROBLEM = _bwrap_problem()
if BWRAP_PROBLEM is not None and REQUIRE_BWRAP:
    raise RuntimeError(f"AGENTHOST_REQUIRE_BWRAP=1 but {BWRAP_PROBLEM}")
needs_bwrap = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"no bubblewrap sandbox: {BWRAP_PROBLEM}")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="per-session uids, cgroups and the egress proxy need root")
# Names the sandbox egress proxy sends to this machine's loopback (tests serve pages there).
TRUSTED_TEST_HOSTS = {"allowed.test": "127.0.0.1", "other.test": "127.0.0.1"}


def run_async(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even when a loop is already running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll a condition until it holds; fail the test with a clear message when it never does."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def sleepers(marker: str) -> list[str]:
    """Host pids of ``sleep <marker>`` processes (a marker no other test uses), wherever they run."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.joinpath("cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                found.append(proc.name)
        except OSError:
            continue
    return found


def _pg_database() -> str:
    """Create a fresh PostgreSQL database for this run and return its URL; skip (or fail) when unreachable."""
    import asyncpg

    name = f"agenthost_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        run_async(create())
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable ({exc}); set AGENTHOST_TEST_PG_URL to run these")
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def _drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_async(drop())


@dataclass
class LiveServer:
    """A running agenthost: its URL and a way to mint keys for new workspaces."""

    base_url: str
    database_url: str
    backend: str
    sandbox_dir: Path | None = None

    def new_key(self, workspace: str | None = None) -> str:
        """A key for ``workspace`` (a fresh one when None), made the way `agenthost keys create` does."""
        workspace = workspace or f"ws-{uuid.uuid4().hex[:12]}"

        async def make() -> str:
            store = Store(Settings(database_url=self.database_url).resolved_database_url())
            try:
                key, _ = await store.keys.create(workspace)
                return key
            finally:
                await store.close()

        return run_async(make())

    def environment_key(self, environment_id: str) -> str:
        """An environment key for a self-hosted environment, as `agenthost keys create --environment` makes it."""

        async def make() -> str:
            store = Store(Settings(database_url=self.database_url).resolved_database_url())
            try:
                key, _ = await store.keys.create_for_environment(environment_id)
                return key
            finally:
                await store.close()

        return run_async(make())


def serve_in_thread(settings: Settings) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Start uvicorn with ``create_app(settings)`` on a free loopback port; return once it accepts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = serving.config(
        create_app(settings), settings, http="h11", loop="asyncio", log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeAnthropic]:
    """The scripted Messages API; the server's provider reaches it through ANTHROPIC_BASE_URL."""
    server = FakeAnthropic().start()
    saved = {k: os.environ.get(k) for k in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")}
    os.environ["ANTHROPIC_BASE_URL"] = server.url
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-fake-key"
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def sandbox_dir() -> Path:
    """A directory for sandboxes that sandbox uids can traverse (pytest's own temp root is private)."""
    path = Path(tempfile.mkdtemp(prefix="agenthost-sandboxes-"))
    path.chmod(0o711)
    return path


def test_settings(data_dir: Path, db_url: str) -> Settings:
    """Settings for a test server: short leases, pings and retry delays (time by configuration)."""
    return Settings(
        data_dir=data_dir,
        database_url=db_url,
        api_key="sk-ah-static-test-key",
        auth_cache_seconds=0,
        ping_seconds=1.0,
        lease_seconds=3.0,
        engine_poll_seconds=0.2,
        model_retries=2,
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
        web_fetch_private_hosts=["127.0.0.1"],
        grep_timeout_seconds=3.0,
        sandbox="bwrap" if BWRAP_PROBLEM is None else "local",
        sandbox_dir=sandbox_dir(),
        sandbox_memory_mb=512,
        sandbox_pids=128,
        sandbox_trusted_hosts=TRUSTED_TEST_HOSTS,
        sandbox_upstream_ca_file=TEST_CA_FILE,  # the tests' HTTPS servers (tests/tls.py)
        sandbox_idle_seconds=1.0,  # the fake model also serves pages for web_fetch
        max_file_bytes=1024 * 1024,
        max_skill_bytes=256 * 1024,
        work_lease_seconds=2,  # a self-hosted worker's item goes back to the queue 2 s after its last beat
    )


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic
) -> Iterator[LiveServer]:
    # Environment packages come from a pip index that the fake model's server also serves.
    index = f"http://allowed.test:{urlsplit(fake.url).port}/pages/simple"
    # web_search asks a search service that the fake model's server also plays (its page "search").
    search = f"{fake.url}/pages/search"
    with live_server(request.param, tmp_path_factory, sandbox_pip_index_url=index, web_search_url=search) as served:
        yield served


@contextlib.contextmanager
def live_server(backend: str, tmp_path_factory: pytest.TempPathFactory, **settings: Any) -> Iterator[LiveServer]:
    """A test server on ``backend`` (sqlite or postgres, a fresh database) with these settings changed."""
    data_dir = tmp_path_factory.mktemp(f"agenthost-{backend}")
    db_url = f"sqlite:///{data_dir / 'agenthost.db'}" if backend == "sqlite" else _pg_database()
    configured = test_settings(data_dir, db_url).model_copy(update=settings)
    base_url, uv, thread = serve_in_thread(configured)
    try:
        yield LiveServer(base_url, db_url, backend, configured.resolved_sandbox_dir())
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        if backend == "postgres":
            _drop_pg_database(db_url)
        shutil.rmtree(configured.resolved_sandbox_dir(), ignore_errors=True)


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """`tests.processes.Agenthost` processes a test starts; stopped, and their sandboxes removed, when it ends."""
    started: list[Any] = []
    yield started
    for process in started:
        process.stop()
    for process in started:
        shutil.rmtree(process.sandbox_dir, ignore_errors=True)


def sdk(server: LiveServer, key: str) -> anthropic.Anthropic:
    """The official client in strict mode, no retries (a retry would hide a wrong status)."""
    return anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0, _strict_response_validation=True)


@pytest.fixture
def key(server: LiveServer) -> str:
    return server.new_key()


@pytest.fixture
def client(server: LiveServer, key: str) -> Iterator[anthropic.Anthropic]:
    with sdk(server, key) as c:
        yield c


@pytest.fixture
async def aclient(server: LiveServer, key: str) -> Any:
    async with anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key=key, max_retries=0, _strict_response_validation=True
    ) as c:
        yield c


@pytest.fixture
def raw(server: LiveServer, key: str) -> Iterator[httpx2.Client]:
    """A plain HTTP client with the key, for what the SDK would never send (bad input, odd headers)."""
    with httpx2.Client(base_url=server.base_url, headers={"x-api-key": key}, timeout=30) as c:
        yield c


@pytest.fixture
def other_client(server: LiveServer) -> Iterator[anthropic.Anthropic]:
    """A client of a second workspace, for isolation tests."""
    with sdk(server, server.new_key()) as c:
        yield c


def assert_error(
    response: httpx2.Response, status: int, error_type: str, mentions: str | None = None
) -> dict[str, Any]:
    """Check the Anthropic error envelope and return its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    if mentions is not None:
        assert mentions in body["error"]["message"], body["error"]["message"]
    return body["error"]


AGENT: dict[str, Any] = {"model": "claude-opus-4-7", "name": "helper"}


@pytest.fixture
def agent(client: anthropic.Anthropic) -> Any:
    return client.beta.agents.create(**AGENT)


@pytest.fixture
def environment(client: anthropic.Anthropic) -> Any:
    return client.beta.environments.create(name=f"env-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@dataclass
class Script:
    """One test's conversation with the fake model: its key is the first line of the agent's system prompt."""

    fake: FakeAnthropic
    key: str

    def __call__(self, *replies: Any) -> None:
        self.fake.script(self.key, *replies)

    @property
    def system(self) -> str:
        return f"{self.key}\nYou are a test agent."

    def requests(self) -> list[dict[str, Any]]:
        return self.fake.requests_for(self.key)

    def agent(self, client: anthropic.Anthropic, **fields: Any) -> Any:
        """An agent whose model calls this script answers."""
        fields.setdefault("model", "claude-opus-4-7")
        return client.beta.agents.create(name="scripted", system=self.system, **fields)


@pytest.fixture
def script(fake: FakeAnthropic) -> Iterator[Script]:
    scripted = Script(fake, f"script-{uuid.uuid4().hex[:12]}")
    yield scripted
    unexpected = [r for r in fake.unexpected if (r.get("system") or [{}])[0].get("text", "").startswith(scripted.key)]
    assert unexpected == [], f"the model was called more often than scripted: {len(unexpected)} extra call(s)"
    assert fake.remaining(scripted.key) == 0, "scripted replies were left unused"


def wait_status(client: anthropic.Anthropic, session_id: str, status: str = "idle", timeout: float = 60) -> Any:
    """Wait until the session reports ``status``; return it."""
    found: list[Any] = []

    def reached() -> bool:
        found[:] = [client.beta.sessions.retrieve(session_id)]
        return found[0].status == status

    wait_until(reached, timeout=timeout, interval=0.05)
    return found[0]
