"""``GET /metrics``: Prometheus figures of known turns, scraped over HTTP and parsed as Prometheus parses them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from agenthost.testing.fake_anthropic import Error, FakeAnthropic, Text, ToolUse
from tests.conftest import LiveServer, Script, live_server, sdk, wait_until
from tests.engine.conftest import Recorder, assert_stream_equals_list
from tests.engine.test_turns import say

TOKEN = "metrics-test-token"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic
) -> Iterator[LiveServer]:
    """A server of this module's own, with metrics on: its counts start from zero."""
    with live_server(request.param, tmp_path_factory, metrics=True, metrics_token=SecretStr(TOKEN)) as served:
        yield served


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    answer = httpx2.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_metrics_need_their_own_token_never_an_api_key(server: LiveServer, key: str) -> None:
    assert httpx2.get(f"{server.base_url}/metrics", timeout=30).status_code == 401
    with_key = httpx2.get(f"{server.base_url}/metrics", headers={"x-api-key": key}, timeout=30)
    assert with_key.status_code == 401 and with_key.json()["error"]["type"] == "authentication_error"
    wrong = httpx2.get(f"{server.base_url}/metrics", headers={"authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    assert "/metrics" not in httpx2.get(f"{server.base_url}/openapi.json", timeout=30).json()["paths"]


def test_known_turns_are_counted_exactly(
    server: LiveServer, client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    before = scrape(server)
    script(Text("Hello."), ToolUse("bash", {"command": "echo hi"}), Text("Done."))
    script(Error(529, "overloaded_error", "busy"), Text("Recovered."))
    agent = script.agent(client, tools=[{"type": "agent_toolset_20260401"}])
    ids = []
    for message in ("hello", "run echo", "try again"):
        session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
        recorder = Recorder(client, session.id)
        recorders.append(recorder)
        if message == "run echo":
            assert scrape(server)[("agenthost_streams_open", ())] >= 1
        client.beta.sessions.events.send(session.id, events=[say(message)])
        assert_stream_equals_list(recorder.idles(), client, session.id)
        ids.append(session.id)
        recorder.close()
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        sample = (name, tuple(sorted(labels.items())))
        return after.get(sample, 0.0) - before.get(sample, 0.0)

    assert grew("agenthost_turns_started_total") == 3
    assert grew("agenthost_turns_ended_total", stop_reason="end_turn") == 3
    assert grew("agenthost_turns_rescheduled_total") == 1
    # Four model requests answered (one per text turn, two in the tool turn), one failed.
    assert grew("agenthost_model_request_seconds_count", outcome="ok") == 4
    assert grew("agenthost_model_request_seconds_count", outcome="error") == 1
    assert grew("agenthost_model_tokens_total", kind="input") == 4 * 10  # the fake's usage per answer
    assert grew("agenthost_model_tokens_total", kind="output") == 4 * 5
    assert grew("agenthost_tool_call_seconds_count", tool="bash") == 1
    assert grew("agenthost_http_requests_total", method="POST", route="/v1/sessions", status="200") == 3
    assert (
        grew("agenthost_http_requests_total", method="POST", route="/v1/sessions/{session_id}/events", status="200")
        == 3
    )
    # Gauges are read when scraped: the runs end and the closed streams are noticed soon after.
    wait_until(lambda: scrape(server)[("agenthost_streams_open", ())] == 0, timeout=30)
    wait_until(lambda: scrape(server)[("agenthost_sessions_running", ())] == 0, timeout=30)


def test_refused_requests_are_counted_by_status(server: LiveServer, key: str) -> None:
    before = scrape(server)
    with sdk(server, key) as client, pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve("sesn_missing")
    unauthenticated = httpx2.get(f"{server.base_url}/v1/agents", timeout=30)
    assert unauthenticated.status_code == 401
    after = scrape(server)
    missing = (
        "agenthost_http_requests_total",
        (("method", "GET"), ("route", "/v1/sessions/{session_id}"), ("status", "404")),
    )
    refused = ("agenthost_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "401")))
    assert after[missing] - before.get(missing, 0) == 1
    assert after[refused] - before.get(refused, 0) == 1
