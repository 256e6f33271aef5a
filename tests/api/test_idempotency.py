"""Idempotency-Key on session create and events send (issue #5 point 5): a retried request
returns the first answer instead of doing the work twice."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import httpx2

from tests.conftest import assert_error


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}


def test_a_retried_session_create_returns_the_first_session(
    client: anthropic.Anthropic, agent: Any, environment: Any
) -> None:
    headers = _key()
    first = client.beta.sessions.with_raw_response.create(
        agent=agent.id, environment_id=environment.id, title="once", extra_headers=headers
    )
    again = client.beta.sessions.with_raw_response.create(
        agent=agent.id, environment_id=environment.id, title="once", extra_headers=headers
    )
    assert again.parse() == first.parse()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert [s.id for s in client.beta.sessions.list()] == [first.parse().id]
    other = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title="once")
    assert other.id != first.parse().id  # without the key, a second create is a second session


def test_a_retried_send_appends_the_events_once(client: anthropic.Anthropic, agent: Any, environment: Any) -> None:
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    headers = _key()
    event = {"type": "user.interrupt"}  # processed at once on an idle session, no model call
    first = client.beta.sessions.events.send(session.id, events=[event], extra_headers=headers)
    again = client.beta.sessions.events.send(session.id, events=[event], extra_headers=headers)
    assert again == first
    assert [e.type for e in client.beta.sessions.events.list(session.id)] == ["user.interrupt"]


def test_a_key_reused_for_another_request_is_refused(
    client: anthropic.Anthropic, raw: httpx2.Client, agent: Any, environment: Any
) -> None:
    headers = _key()
    client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title="a", extra_headers=headers)
    body = {"agent": agent.id, "environment_id": environment.id, "title": "b"}
    assert_error(raw.post("/v1/sessions", json=body, headers=headers), 400, "invalid_request_error", "Idempotency-Key")
    assert [s.title for s in client.beta.sessions.list()] == ["a"]


def test_keys_belong_to_a_workspace_and_failed_requests_keep_none(
    client: anthropic.Anthropic,
    other_client: anthropic.Anthropic,
    raw: httpx2.Client,
    agent: Any,
    environment: Any,
) -> None:
    headers = _key()
    refused = {"agent": agent.id, "environment_id": "env_unknown"}
    assert_error(raw.post("/v1/sessions", json=refused, headers=headers), 404, "not_found_error")
    # The refused request changed nothing and kept no answer: the key does the work now.
    created = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, extra_headers=headers)
    other_agent = other_client.beta.agents.create(model="claude-opus-4-7", name="other")
    other_env = other_client.beta.environments.create(name="other")
    theirs = other_client.beta.sessions.create(agent=other_agent.id, environment_id=other_env.id, extra_headers=headers)
    assert theirs.id != created.id  # the same key in another workspace is another key


def test_malformed_keys_are_refused(raw: httpx2.Client, agent: Any, environment: Any) -> None:
    body = {"agent": agent.id, "environment_id": environment.id}
    for bad in ("x" * 256, ""):
        assert_error(
            raw.post("/v1/sessions", json=body, headers={"Idempotency-Key": bad}),
            400,
            "invalid_request_error",
            "Idempotency-Key",
        )
    assert raw.get("/v1/sessions").json()["data"] == []


def test_concurrent_retries_make_one_session(
    client: anthropic.Anthropic, server: Any, key: str, agent: Any, environment: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    headers = _key() | {"x-api-key": key}
    body = {"agent": agent.id, "environment_id": environment.id}

    def create(_: int) -> httpx2.Response:
        return httpx2.post(f"{server.base_url}/v1/sessions", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(create, range(8)))
    created = {a.json()["id"] for a in answers if a.status_code == 200}
    retry_later = [a for a in answers if a.status_code == 409]
    assert len(created) == 1 and len(answers) == 8
    assert all(a.status_code in (200, 409) for a in answers)
    for answer in retry_later:
        assert answer.headers["x-should-retry"] == "true"
        assert_error(answer, 409, "invalid_request_error", "still being processed")
    assert [s.id for s in client.beta.sessions.list()] == list(created)


def test_a_stale_claim_is_taken_over_by_exactly_one_retry(server: Any) -> None:
    """A claim whose server died (no answer after STALE_US) goes to one of many concurrent retries."""
    import asyncio

    import sqlalchemy as sa

    from agenthost.settings import Settings
    from agenthost.store.idempotency import STALE_US
    from agenthost.store.sql import Store
    from agenthost.store.tables import idempotency_keys
    from tests.conftest import run_async

    key = f"stale-{uuid.uuid4().hex}"

    async def scenario() -> list[str]:
        store = Store(Settings(database_url=server.database_url).resolved_database_url())
        try:
            first = await store.idempotency.claim("ws-stale", key, "f" * 64)
            assert first.state == "new"
            aged = idempotency_keys.update().where(idempotency_keys.c.key == key)
            await store.db.run_write(
                lambda conn: conn.execute(aged.values(created_at=idempotency_keys.c.created_at - STALE_US - 1))
            )
            claims = await asyncio.gather(*(store.idempotency.claim("ws-stale", key, "f" * 64) for _ in range(8)))
            winner = next(c for c in claims if c.state == "new")
            # The dead request's late answer is not stored over the new claimant's.
            await store.idempotency.complete("ws-stale", key, first.token, 200, '{"late": true}')
            await store.idempotency.complete("ws-stale", key, winner.token, 200, '{"winner": true}')
            replay = await store.idempotency.claim("ws-stale", key, "f" * 64)
            assert replay.state == "replay" and replay.body == '{"winner": true}'
            count = sa.select(sa.func.count()).select_from(idempotency_keys).where(idempotency_keys.c.key == key)
            assert await store.db.run_read(lambda conn: conn.execute(count).scalar_one()) == 1
            return [c.state for c in claims]
        finally:
            await store.close()

    states = run_async(scenario())
    assert states.count("new") == 1 and states.count("in_progress") == 7
