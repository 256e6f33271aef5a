"""PostgreSQL faults mid-turn: a turn is delayed, never lost, duplicated or ended with an error.

The server reaches its database through a proxy that can drop every connection and refuse new
ones (PostgreSQL restarting, or a network cut), and its connections are also terminated by
PostgreSQL itself (``pg_terminate_backend``). The model's answer is held until the fault is in
place, so the engine meets it in the writes that follow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import anthropic
import asyncpg
import pytest

from agenthost.testing.fake_anthropic import FakeAnthropic, Hold, Text, ToolUse
from tests.conftest import (
    AGENT,
    LiveServer,
    Script,
    _drop_pg_database,
    _pg_database,
    run_async,
    sdk,
    serve_in_thread,
    test_settings,
)
from tests.engine.conftest import ONE_TOOL_TURN, Recorder, assert_stream_equals_list, recorders, types
from tests.engine.test_turns import TOOLSET, say
from tests.faults import CuttableProxy

pytestmark = pytest.mark.postgres
__all__ = ["recorders"]  # the fixture, shared with the engine tests


class Faulty:
    def __init__(self, server: LiveServer, proxy: CuttableProxy, direct_url: str):
        self.server = server
        self.proxy = proxy
        self.direct_url = direct_url

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` every other connection to the server's database; how many there were."""

        async def terminate() -> int:
            conn = await asyncpg.connect(self.direct_url, timeout=10)
            try:
                rows = await conn.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                return len(rows)
            finally:
                await conn.close()

        return run_async(terminate())


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic) -> Iterator[Faulty]:
    direct = _pg_database()
    parts = urlsplit(direct)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxied = parts._replace(netloc=f"{parts.hostname}:{proxy.port}").geturl()
    data_dir = tmp_path_factory.mktemp("faults")
    settings = test_settings(data_dir, proxied).model_copy(
        update={
            "lease_seconds": 10.0,
            "notify_check_seconds": 0.5,
            "database_pool_size": 2,
            "database_pool_overflow": 0,
        }
    )
    base_url, uv, thread = serve_in_thread(settings)
    try:
        yield Faulty(LiveServer(base_url, direct, "postgres", settings.resolved_sandbox_dir()), proxy, direct)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        proxy.close()
        _drop_pg_database(direct)


@pytest.fixture
def client(faulty: Faulty) -> Iterator[anthropic.Anthropic]:
    with sdk(faulty.server, faulty.server.new_key()) as made:
        yield made


def _one_tool_turn_through(fault: Any, client: anthropic.Anthropic, script: Script, recorders: list[Recorder]) -> None:
    held = Hold(ToolUse("bash", {"command": "echo survived"}))
    script(held, Text("Done."))
    environment = client.beta.environments.create(name=f"faults-{time.monotonic_ns()}")
    agent = script.agent(client, tools=[TOOLSET])
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("run it")])
    assert held.started.wait(30)
    fault()  # while the model's answer is held back: the writes that follow meet the fault
    held.release.set()
    listed = assert_stream_equals_list(recorder.idles(timeout=90), client, session.id)
    assert types(listed) == ONE_TOOL_TURN, types(listed)
    result = next(e for e in listed if e.type == "agent.tool_result")
    assert result.content[0].text == "survived"


def test_a_turn_survives_the_database_going_away_and_coming_back(
    faulty: Faulty, client: anthropic.Anthropic, script: Script, recorders: list[Recorder]
) -> None:
    def restart() -> None:
        faulty.proxy.cut()
        time.sleep(2)  # down for as long as a restart takes; the engine is retrying meanwhile
        faulty.proxy.restore()

    with ThreadPoolExecutor(1) as pool:
        _one_tool_turn_through(lambda: pool.submit(restart), client, script, recorders)


def test_a_turn_survives_every_connection_being_terminated(
    faulty: Faulty, client: anthropic.Anthropic, script: Script, recorders: list[Recorder]
) -> None:
    terminated: list[int] = []
    _one_tool_turn_through(lambda: terminated.append(faulty.terminate_backends()), client, script, recorders)
    assert terminated[0] >= 1  # the pool's and the listener's connections were there to terminate


def test_requests_beyond_the_pool_wait_for_a_connection_instead_of_failing(
    faulty: Faulty, client: anthropic.Anthropic
) -> None:
    """The server's pool holds two connections; forty requests at once are each served."""
    environment = client.beta.environments.create(name=f"pool-{time.monotonic_ns()}")
    agent = client.beta.agents.create(**AGENT)

    def create(_: int) -> str:
        return client.beta.sessions.create(agent=agent.id, environment_id=environment.id).id

    with ThreadPoolExecutor(40) as pool:
        made = list(pool.map(create, range(40)))
    assert len(set(made)) == 40
    assert {s.id for s in client.beta.sessions.list(limit=100)} == set(made)


def test_requests_while_the_database_is_down_wait_it_out(faulty: Faulty, client: anthropic.Anthropic) -> None:
    faulty.proxy.cut()
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: client.beta.environments.create(name=f"during-{time.monotonic_ns()}"))
            time.sleep(1.5)  # the request is retrying against a database that is away
            faulty.proxy.restore()
            made = pending.result(timeout=60)
    finally:
        faulty.proxy.restore()
    assert client.beta.environments.retrieve(made.id).name == made.name
