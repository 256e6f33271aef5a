"""The self-hosted work protocol: poll, ack, heartbeat, stop, and environment keys.

Driven with the official client in strict mode, as a worker (environment key) and as an operator
(API key) of the same workspace.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import LiveServer, sdk, wait_until


@pytest.fixture
def operator(server: LiveServer) -> Iterator[anthropic.Anthropic]:
    with sdk(server, server.new_key(f"work-{uuid.uuid4().hex[:8]}")) as client:
        yield client


def _session(operator: anthropic.Anthropic, environment_id: str) -> Any:
    agent = operator.beta.agents.create(model="claude-opus-4-7", name="w", tools=[{"type": "agent_toolset_20260401"}])
    return operator.beta.sessions.create(agent=agent.id, environment_id=environment_id)


def test_a_worker_polls_acks_heartbeats_and_stops_the_work_of_a_new_session(
    server: LiveServer, operator: anthropic.Anthropic
) -> None:
    env = operator.beta.environments.create(name="own-hardware", config={"type": "self_hosted"})
    assert operator.beta.environments.work.stats(env.id).depth == 0
    session = _session(operator, env.id)
    with sdk(server, server.environment_key(env.id)) as worker:
        work = worker.beta.environments.work
        stats = work.stats(env.id)
        assert (stats.depth, stats.pending, stats.type) == (1, 0, "work_queue_stats")
        assert stats.oldest_queued_at is not None

        item = work.poll(env.id, block_ms=50, anthropic_worker_id="worker-1")
        assert item is not None and item.type == "work" and item.state == "queued"
        assert (item.data.type, item.data.id, item.environment_id) == ("session", session.id, env.id)
        assert item.id.startswith("work_") and item.metadata == {} and item.secret is None
        assert work.poll(env.id, block_ms=30) is None  # held, then JSON null: nothing else is queued
        stats = work.stats(env.id)
        assert (stats.depth, stats.pending, stats.workers_polling) == (0, 1, 1)
        # Polled but never acknowledged: handed out again once older than reclaim_older_than_ms.
        again = work.poll(env.id, reclaim_older_than_ms=0)
        assert again is not None and again.id == item.id

        started = work.ack(item.id, environment_id=env.id)
        assert started.state == "starting" and started.acknowledged_at is not None
        with pytest.raises(anthropic.ConflictError):
            work.ack(item.id, environment_id=env.id)

        first = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
        assert (first.type, first.state, first.lease_extended) == ("work_heartbeat", "active", True)
        assert first.ttl_seconds == 2  # the server's work_lease_seconds
        with pytest.raises(anthropic.PreconditionFailedError) as lost:
            work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
        body: Any = lost.value.body
        assert body["error"]["details"]["error_code"] == "heartbeat_precondition_failed"
        assert body["error"]["details"]["current_state"] == {
            "state": "active",
            "ttl_seconds": 2,
            "last_heartbeat": first.last_heartbeat,
            "lease_extended": False,
        }
        second = work.heartbeat(
            item.id, environment_id=env.id, expected_last_heartbeat=first.last_heartbeat, desired_ttl_seconds=30
        )
        assert second.lease_extended is True and second.ttl_seconds == 30
        assert second.last_heartbeat > first.last_heartbeat

        labelled = operator.beta.environments.work.update(item.id, environment_id=env.id, metadata={"host": "rack-7"})
        assert labelled.metadata == {"host": "rack-7"}
        fetched = operator.beta.environments.work.retrieve(item.id, environment_id=env.id)
        assert fetched.state == "active" and fetched.started_at is not None
        assert fetched.latest_heartbeat_at == second.last_heartbeat and fetched.secret is None
        assert [w.id for w in work.list(env.id)] == [item.id]

        stopping = operator.beta.environments.work.stop(item.id, environment_id=env.id)
        assert stopping.state == "stopping" and stopping.stop_requested_at is not None
        told = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="stale")  # not checked now
        assert (told.state, told.lease_extended) == ("stopping", False)
        stopped = work.stop(item.id, environment_id=env.id, force=True)
        assert stopped.state == "stopped" and stopped.stopped_at is not None
        with pytest.raises(anthropic.ConflictError):
            work.stop(item.id, environment_id=env.id)

        # New input for a session whose worker stopped queues a new item for the next worker.
        operator.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hello"}]}]
        )
        fresh = work.poll(env.id)
        assert fresh is not None and fresh.id != item.id and fresh.data.id == session.id


def test_an_environment_key_is_only_its_workers_credential(server: LiveServer, operator: anthropic.Anthropic) -> None:
    own = operator.beta.environments.create(name="mine", config={"type": "self_hosted"})
    other = operator.beta.environments.create(name="theirs", config={"type": "self_hosted"})
    session, foreign = _session(operator, own.id), _session(operator, other.id)
    with sdk(server, server.environment_key(own.id)) as worker:
        assert worker.beta.sessions.retrieve(session.id).id == session.id
        assert list(worker.beta.sessions.events.list(session.id)) == []
        refused = [
            lambda: worker.beta.agents.list(),
            lambda: worker.beta.sessions.list(),
            lambda: worker.beta.sessions.delete(session.id),
            lambda: worker.beta.sessions.update(session.id, title="mine now"),
            lambda: worker.beta.sessions.resources.list(session.id),
        ]
        for call in refused:
            with pytest.raises(anthropic.PermissionDeniedError) as denied:
                call()
            assert "environment key" in denied.value.message
        # What lies outside its environment looks exactly like what does not exist: no existence oracle.
        for exists, unknown in [
            (lambda: worker.beta.sessions.retrieve(foreign.id), lambda: worker.beta.sessions.retrieve("sesn_none")),
            (lambda: worker.beta.sessions.delete(foreign.id), lambda: worker.beta.sessions.delete("sesn_none")),
            (lambda: worker.beta.sessions.archive(foreign.id), lambda: worker.beta.sessions.archive("sesn_none")),
            (lambda: worker.beta.environments.work.poll(other.id), lambda: worker.beta.environments.work.poll("env_x")),
        ]:
            answers = []
            for call in (exists, unknown):
                with pytest.raises(anthropic.NotFoundError) as missing:
                    call()
                message = missing.value.body["error"]["message"]  # type: ignore[index]
                answers.append(message.replace(foreign.id, "ID").replace("sesn_none", "ID"))
            assert answers[0].replace(other.id, "ID") == answers[1].replace("env_x", "ID")
    assert operator.beta.sessions.retrieve(session.id).title is None  # nothing changed
    assert list(operator.beta.sessions.events.list(session.id)) == []


def test_work_calls_are_refused_clearly(operator: anthropic.Anthropic) -> None:
    cloud = operator.beta.environments.create(name="cloud")
    with pytest.raises(anthropic.BadRequestError) as not_self_hosted:
        operator.beta.environments.work.poll(cloud.id)
    assert "not a self_hosted environment" in not_self_hosted.value.message
    hosted = operator.beta.environments.create(name="own", config={"type": "self_hosted"})
    with pytest.raises(anthropic.BadRequestError) as zero:
        operator.beta.environments.work.poll(hosted.id, block_ms=0)
    assert "block_ms" in zero.value.message
    with pytest.raises(anthropic.NotFoundError):
        operator.beta.environments.work.ack("work_missing", environment_id=hosted.id)
    with pytest.raises(anthropic.BadRequestError) as extra:
        operator.beta.environments.work.stop("work_missing", environment_id=hosted.id, extra_body={"now": True})
    assert "now" in extra.value.message


def test_an_item_whose_worker_went_quiet_goes_to_the_next_one_and_never_twice(
    server: LiveServer, operator: anthropic.Anthropic
) -> None:
    env = operator.beta.environments.create(name="flaky", config={"type": "self_hosted"})
    session = _session(operator, env.id)
    with sdk(server, server.environment_key(env.id)) as worker:
        work = worker.beta.environments.work
        item = work.poll(env.id)
        assert item is not None
        work.ack(item.id, environment_id=env.id)
        beat = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
        # Its worker dies: once the lease (2 s here) runs out the same item, not a second one, is handed out.
        wait_until(lambda: (again := work.poll(env.id)) is not None and again.id == item.id, timeout=10)
        assert [w.id for w in work.list(env.id)] == [item.id]
        with pytest.raises(anthropic.PreconditionFailedError):  # the old worker's lease is gone
            work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=beat.last_heartbeat)

        work.ack(item.id, environment_id=env.id)
        work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
        # Told to stop, its worker never confirms: after the lease the item is over, not handed out again...
        operator.beta.environments.work.stop(item.id, environment_id=env.id)
        wait_until(
            lambda: (
                operator.beta.environments.work.retrieve(item.id, environment_id=env.id).state == "stopped"
                or work.poll(env.id) is not None
            ),
            timeout=10,
        )
        assert operator.beta.environments.work.retrieve(item.id, environment_id=env.id).state == "stopped"
        # ...and the session's next input queues a new one.
        operator.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "again"}]}]
        )
        fresh = work.poll(env.id)
        assert fresh is not None and fresh.id != item.id and fresh.data.id == session.id
