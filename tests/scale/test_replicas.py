"""Many processes on one PostgreSQL: two API replicas (`serve --no-engine`) and two engine workers.

Real processes, a real PostgreSQL database of their own, the official client in strict mode.
Sessions are created on one replica, streamed from the other and driven from both, while
the workers share the turns; every stream must equal ``events.list`` on either replica.
A worker stopped with SIGTERM hands its turn to the other, and an interrupt sent to a
replica reaches the worker running the session. Each process serves the metrics of what it did.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agenthost.store.listen import APPLICATION_NAME
from agenthost.testing.fake_anthropic import FakeAnthropic, Hold, Text, ToolUse
from tests.conftest import Script, _drop_pg_database, _pg_database, run_async, sandbox_dir, wait_until
from tests.engine.conftest import ONE_TOOL_TURN, Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say
from tests.processes import KEY, Agenthost, free_port, running

pytestmark = pytest.mark.postgres

# A one-bash-call turn whose run died in the bash call and was taken over (the call is not run again).
TAKEN_OVER_TOOL_TURN = [
    "user.message",
    "session.status_running",
    "span.model_request_start",
    "agent.tool_use",
    "span.model_request_end",
    "session.status_rescheduled",
    "session.status_running",
    "agent.tool_result",
    "span.model_request_start",
    "agent.message",
    "span.model_request_end",
    "session.usage",
    "session.status_idle",
]


@dataclass
class Cluster:
    a: anthropic.Anthropic
    b: anthropic.Anthropic
    workers: list[Agenthost]
    environment_id: str
    database: str
    tmp_path: Path
    processes: list[Agenthost]
    sandboxes: str  # one machine: every worker sees every session's files

    def start_worker(self) -> Agenthost:
        name = f"w{len(self.workers) + 1}"
        worker = Agenthost(
            ["worker"], self.tmp_path / name, database_url=self.database, sandbox_dir=self.sandboxes, log_level="info"
        )
        self.processes.append(worker)
        self.workers.append(worker)
        return worker

    def session(self, fake: FakeAnthropic, *replies: Any) -> tuple[Any, Script]:
        """A session, created on replica A, of an agent whose model calls get ``replies``."""
        script = Script(fake, f"replicas-{uuid.uuid4().hex[:12]}")
        script(*replies)
        agent = script.agent(self.a, tools=[TOOLSET])
        return self.a.beta.sessions.create(agent=agent.id, environment_id=self.environment_id), script

    def claims(self, session_id: str) -> list[int]:
        """For each worker, how many times it claimed the session (its log says so at INFO)."""
        pattern = re.compile(rf"claimed {session_id}\b")
        return [len(pattern.findall(worker.output())) for worker in self.workers]


def _client(process: Agenthost) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=process.url, api_key=KEY, max_retries=0, _strict_response_validation=True)


@pytest.fixture
def cluster(tmp_path: Path, processes: list[Agenthost], fake: FakeAnthropic) -> Iterator[Cluster]:
    database = _pg_database()
    try:
        for name in ("a", "b"):
            processes.append(
                Agenthost(["serve", "--no-engine"], tmp_path / name, port=free_port(), database_url=database)
            )
        a, b = (_client(process) for process in processes[:2])
        environment = a.beta.environments.create(name="replicas")
        made = Cluster(a, b, [], environment.id, database, tmp_path, processes, str(sandbox_dir()))
        made.start_worker()
        made.start_worker()
        yield made
        a.close()
        b.close()
    finally:
        for process in processes:
            process.stop()
        _drop_pg_database(database)


def test_sessions_made_on_one_replica_stream_from_the_other_while_two_workers_run_the_turns(
    cluster: Cluster, fake: FakeAnthropic
) -> None:
    made = [
        cluster.session(fake, ToolUse("bash", {"command": f"echo turn {index}"}), Text(f"done {index}"))
        for index in range(6)
    ]
    recorders = [Recorder(cluster.b, session.id) for session, _ in made]
    try:
        for index, (session, _) in enumerate(made):  # sent to both replicas in turn
            (cluster.a if index % 2 else cluster.b).beta.sessions.events.send(session.id, events=[say(f"go {index}")])
        for index, ((session, script), recorder) in enumerate(zip(made, recorders, strict=True)):
            streamed = recorder.idles(timeout=30)
            listed = assert_stream_equals_list(streamed, cluster.b, session.id)
            assert types(listed) == ONE_TOOL_TURN
            assert [e.id for e in cluster.a.beta.sessions.events.list(session.id, limit=1000)] == [e.id for e in listed]
            result = listed[5]
            assert result.type == "agent.tool_result" and result.content[0].text == f"turn {index}"
            assert listed[7].type == "agent.message" and listed[7].content[0].text == f"done {index}"
            assert fake.remaining(script.key) == 0
            assert sorted(cluster.claims(session.id)) == [0, 1]  # one worker ran the turn, once
            assert cluster.a.beta.sessions.retrieve(session.id).status == "idle"
    finally:
        for recorder in recorders:
            recorder.close()


def test_a_stopped_worker_hands_its_turn_over_and_interrupts_and_deletes_cross_processes(
    cluster: Cluster, fake: FakeAnthropic
) -> None:
    session, script = cluster.session(
        fake,
        ToolUse("bash", {"command": "sleep 27.3"}),
        Text("Taken over."),
        ToolUse("bash", {"command": "sleep 26.9"}),
    )
    watch = Recorder(cluster.b, session.id)
    try:
        cluster.a.beta.sessions.events.send(session.id, events=[say("sleep")])
        before = watch.wait(lambda evs: "agent.tool_use" in types(evs))
        wait_until(lambda: running("sleep 27.3"))
        holder = cluster.claims(session.id).index(1)
        cluster.workers[holder].stop()  # SIGTERM: the run is cancelled and its lease handed back
        assert not running("sleep 27.3")
        first_turn = watch.idles(timeout=30)
        listed = assert_stream_equals_list(first_turn, cluster.a, session.id)
        # The other worker took the turn over at once: there was no lease to wait out.
        assert types(listed) == TAKEN_OVER_TOOL_TURN
        assert listed[7].is_error is True and "was not run again" in listed[7].content[0].text
        assert cluster.claims(session.id)[1 - holder] == 1

        # Last-Event-ID on the other replica replays from the tool call on, as B's stream showed it.
        resumed = Recorder(cluster.a, session.id, extra_headers={"Last-Event-ID": before[-1].id})
        shown_after = first_turn[len(before) :]
        replay = resumed.wait(lambda evs: len(evs) >= len(shown_after))
        resumed.close()
        assert [(e.id, e.processed_at) for e in replay] == [(e.id, e.processed_at) for e in shown_after]

        # An interrupt sent to replica B stops the bash call the remaining worker runs.
        cluster.a.beta.sessions.events.send(session.id, events=[say("sleep again")])
        watch.wait(lambda evs: types(evs).count("agent.tool_use") == 2)
        wait_until(lambda: running("sleep 26.9"))
        cluster.b.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
        second_turn = watch.idles(2, timeout=30)[len(first_turn) :]
        assert not running("sleep 26.9")
        listed = assert_stream_equals_list(first_turn + second_turn, cluster.b, session.id)
        assert types(listed)[len(types(first_turn)) - 1 :] == [
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.tool_use",
            "span.model_request_end",
            "agent.tool_result",
            "user.interrupt",
            "session.usage",
            "session.status_idle",
        ]
        assert listed[-1].stop_reason.type == "end_turn"
        assert fake.remaining(script.key) == 0

        # Deleted through replica A: the stream on replica B ends with session.deleted.
        cluster.a.beta.sessions.delete(session.id)
        assert watch.ended.wait(10)
        assert watch.events[-1].type == "session.deleted" and watch.error is None
    finally:
        watch.close()


def _listeners(database: str, terminate: bool = False) -> int:
    """How many processes listen on the cluster's database; with ``terminate``, how many connections were cut."""
    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(database)
        try:
            where = "application_name = $1 AND datname = current_database()"
            if terminate:
                cut = f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}"
                return int(await conn.fetchval(cut, APPLICATION_NAME))
            return int(await conn.fetchval(f"SELECT count(*) FROM pg_stat_activity WHERE {where}", APPLICATION_NAME))
        finally:
            await conn.close()

    return int(run_async(run()))


def test_streams_and_workers_recover_when_their_listen_connections_drop(cluster: Cluster, fake: FakeAnthropic) -> None:
    session, script = cluster.session(fake, Text("Still here."))
    watch = Recorder(cluster.b, session.id)
    try:
        assert _listeners(cluster.database) == 4
        # Cut every listen connection; notifications sent before each reconnects reach nobody.
        assert _listeners(cluster.database, terminate=True) == 4
        cluster.a.beta.sessions.events.send(session.id, events=[say("anyone?")])
        streamed = watch.idles(timeout=30)
        listed = assert_stream_equals_list(streamed, cluster.b, session.id)
        assert types(listed) == [
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.usage",
            "session.status_idle",
        ]
        assert fake.remaining(script.key) == 0
        wait_until(lambda: _listeners(cluster.database) == 4)  # every process listens again
    finally:
        watch.close()


@pytest.mark.parametrize("point", ["model call", "bash call"])
def test_a_worker_killed_mid_turn_leaves_the_turn_to_the_other_with_nothing_run_twice(
    cluster: Cluster, fake: FakeAnthropic, point: str
) -> None:
    """SIGKILL: no hand-over, the lease runs out (1.5 s here), then the other worker continues the turn."""
    held = Hold(ToolUse("bash", {"command": "echo never"}))
    first_reply: Any = held if point == "model call" else ToolUse("bash", {"command": "echo ran >> runs; sleep 25.1"})
    count = ToolUse("bash", {"command": "cat runs 2>/dev/null || echo none"})
    session, script = cluster.session(fake, first_reply, Text("Recovered."), count, Text("Counted."))
    watch = Recorder(cluster.b, session.id)
    try:
        cluster.a.beta.sessions.events.send(session.id, events=[say("work")])
        if point == "model call":
            assert held.started.wait(20)
        else:
            watch.wait(lambda evs: "agent.tool_use" in types(evs))
            wait_until(lambda: running("sleep 25.1"))
        victim = cluster.claims(session.id).index(1)
        cluster.workers[victim].kill()
        held.release.set()  # the fake model's answer now goes to a dead connection
        streamed = watch.idles(timeout=30)
        listed = assert_stream_equals_list(streamed, cluster.a, session.id)
        if point == "model call":
            assert types(listed) == [
                "user.message",
                "session.status_running",
                "span.model_request_start",
                "session.status_rescheduled",
                "session.status_running",
                "span.model_request_end",  # the call in flight ends as failed, then the model is asked again
                "span.model_request_start",
                "agent.message",
                "span.model_request_end",
                "session.usage",
                "session.status_idle",
            ]
            assert listed[5].is_error is True and listed[5].model_request_start_id == listed[2].id
        else:
            assert types(listed) == TAKEN_OVER_TOOL_TURN
            assert listed[7].is_error is True and "was not run again" in listed[7].content[0].text
        assert cluster.claims(session.id)[1 - victim] == 1
        assert listed[-1].stop_reason.type == "end_turn"

        # The cut-off bash call ran once (or, cut off in the model call, never): the next turn counts.
        cluster.b.beta.sessions.events.send(session.id, events=[say("count")])
        both = watch.idles(2, timeout=30)
        result = [e for e in both if e.type == "agent.tool_result"][-1]
        assert result.content[0].text == ("none" if point == "model call" else "ran")
        assert_stream_equals_list(both, cluster.b, session.id)
        assert fake.remaining(script.key) == 0
    finally:
        held.release.set()
        watch.close()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_with_every_worker_gone_a_died_run_reads_rescheduling_until_a_new_worker_finishes_it(
    cluster: Cluster, fake: FakeAnthropic, how: str
) -> None:
    session, script = cluster.session(fake, ToolUse("bash", {"command": "sleep 24.3"}), Text("Back."))
    watch = Recorder(cluster.b, session.id)
    try:
        cluster.a.beta.sessions.events.send(session.id, events=[say("work")])
        watch.wait(lambda evs: "agent.tool_use" in types(evs))
        wait_until(lambda: running("sleep 24.3"))
        holder = cluster.workers[cluster.claims(session.id).index(1)]
        for worker in sorted(cluster.workers, key=lambda w: w is holder):  # the holder last: nobody is left to
            worker.kill() if how == "SIGKILL" else worker.stop()  # take the turn it hands back on SIGTERM
        # An API replica releases the expired (or handed back) lease: the session reads rescheduling.
        watch.wait(lambda evs: "session.status_rescheduled" in types(evs))
        assert cluster.a.beta.sessions.retrieve(session.id).status == "rescheduling"
        cluster.start_worker()
        listed = assert_stream_equals_list(watch.idles(timeout=30), cluster.a, session.id)
        assert types(listed) == TAKEN_OVER_TOOL_TURN
        assert listed[7].is_error is True and "was not run again" in listed[7].content[0].text
        assert cluster.claims(session.id)[2] == 1  # the new worker took it
        assert fake.remaining(script.key) == 0
    finally:
        watch.close()


def test_a_worker_serves_the_metrics_of_the_turns_it_ran_on_a_port_of_its_own(
    tmp_path: Path, processes: list[Agenthost], fake: FakeAnthropic
) -> None:
    def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = httpx2.get(f"{url}/metrics", headers={"authorization": "Bearer scrape"}, timeout=30)
        assert answer.status_code == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }

    database = _pg_database()
    try:
        metrics = {"database_url": database, "metrics": "true", "metrics_token": "scrape"}
        replica = Agenthost(["serve", "--no-engine"], tmp_path / "api", port=free_port(), **metrics)
        port = free_port()
        worker = Agenthost(
            ["worker"], tmp_path / "worker", sandbox_dir=str(sandbox_dir()), metrics_port=str(port), **metrics
        )
        processes.extend([replica, worker])
        client = _client(replica)
        script = Script(fake, f"replicas-{uuid.uuid4().hex[:12]}")
        script(Text("Counted."))
        environment = client.beta.environments.create(name="metrics")
        session = client.beta.sessions.create(agent=script.agent(client).id, environment_id=environment.id)
        client.beta.sessions.events.send(session.id, events=[say("count me")])
        wait_until(lambda: client.beta.sessions.retrieve(session.id).status == "idle", timeout=60)
        ran = scrape(f"http://127.0.0.1:{port}")
        assert ran[("agenthost_turns_started_total", ())] == 1
        assert ran[("agenthost_turns_ended_total", (("stop_reason", "end_turn"),))] == 1
        assert ran[("agenthost_model_request_seconds_count", (("outcome", "ok"),))] == 1
        answered = scrape(replica.url or "")
        assert (
            answered[
                ("agenthost_http_requests_total", (("method", "POST"), ("route", "/v1/sessions"), ("status", "200")))
            ]
            == 1
        )
        assert answered.get(("agenthost_turns_started_total", ()), 0) == 0  # the replica ran no turn
        assert httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 401
        client.close()
    finally:
        for process in processes:
            process.stop()
        _drop_pg_database(database)
