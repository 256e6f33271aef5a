"""Connection hygiene of `agenthost serve` as a real process: slow clients are cut off, others are served.

The process runs with short deadlines (1 s for headers and bodies) and a cap of two event
streams per key, so each limit shows in seconds; the conditions are waited on, never timed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest

from tests.conftest import AGENT, assert_error, wait_until
from tests.processes import KEY, Agenthost, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agenthost]:
    process = Agenthost(
        ["serve"],
        tmp_path_factory.mktemp("connections") / "data",
        port=free_port(),
        sandbox="local",  # no tool runs here
        header_timeout_seconds="1",
        body_timeout_seconds="1",
        max_streams_per_key="2",
    )
    yield process
    process.stop()


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_clients_that_never_finish_their_headers_are_disconnected_while_others_are_served(served: Agenthost) -> None:
    slow = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", int(str(served.url).rsplit(":", 1)[1])))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and never the rest
        sock.settimeout(0.2)
        slow.append(sock)
    try:
        assert httpx2.get(f"{served.url}/health", timeout=30).status_code == 200  # served meanwhile
        for sock in slow:
            wait_until(lambda sock=sock: _closed_by_server(sock), timeout=60, interval=0)
    finally:
        for sock in slow:
            sock.close()
    assert httpx2.get(f"{served.url}/health", timeout=30).status_code == 200


def test_a_keep_alive_connection_that_stalls_in_its_next_headers_is_disconnected(served: Agenthost) -> None:
    sock = socket.create_connection(("127.0.0.1", int(str(served.url).rsplit(":", 1)[1])))
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(30)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next request, stalled
        sock.settimeout(0.2)
        wait_until(lambda: _closed_by_server(sock), timeout=60, interval=0)
    finally:
        sock.close()


def test_a_stalled_request_body_gets_408_and_writes_nothing(served: Agenthost) -> None:
    sock = socket.create_connection(("127.0.0.1", int(str(served.url).rsplit(":", 1)[1])))
    try:
        head = (
            "POST /v1/environments HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"x-api-key: {KEY}\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"name": "sta')  # then nothing more
        sock.settimeout(60)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), answer
    assert b'"type":"timeout_error"' in rest and b"body" in rest
    with anthropic.Anthropic(base_url=served.url, api_key=KEY, max_retries=0) as client:
        assert [e.name for e in client.beta.environments.list()] == []


def test_a_key_holds_at_most_its_cap_of_event_streams(served: Agenthost, tmp_path: Path) -> None:
    with anthropic.Anthropic(
        base_url=served.url, api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        agent = client.beta.agents.create(**AGENT)
        environment = client.beta.environments.create(name="streams")
        session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    url = f"{served.url}/v1/sessions/{session.id}/events/stream"
    headers = {"x-api-key": KEY}
    with httpx2.Client(timeout=30) as http:
        with http.stream("GET", url, headers=headers) as first, http.stream("GET", url, headers=headers) as second:
            assert first.status_code == second.status_code == 200
            third = http.get(url, headers=headers)
            error = assert_error(third, 429, "rate_limit_error", "2 open event streams")
            assert int(third.headers["retry-after"]) >= 1
            assert third.headers["x-should-retry"] == "true"
            assert error["message"]

        def another_opens() -> bool:  # the server notices the closed streams
            with http.stream("GET", url, headers=headers) as again:
                return again.status_code == 200

        wait_until(another_opens, timeout=60)
