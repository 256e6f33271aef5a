"""Turn overhead, event delivery latency and many concurrent turns, with an instant scripted model.

    python bench/turns.py [--turns 60] [--subscribers 100] [--sessions 200]

The model is agenthost's fake Messages API (agenthost.testing.fake_anthropic) in a process
of its own, every reply scripted before the start, so that the clients' threads in this
process do not slow the model down (they share one interpreter lock); the server is a real
`agenthost serve` process on SQLite reaching it through ANTHROPIC_BASE_URL. Prints one line
per figure for docs/benchmarks.md.

(a) turn overhead: from events.send to session.status_idle seen on an open stream, for a
    turn with one bash call (two model calls, one `true` in the sandbox's shell);
(b) delivery latency: from an event's commit (its processed_at) to its arrival at each of
    N subscribers of one session;
(c) N sessions running a one-bash-call turn at once: all finish with the exact event
    sequence; wall time, turns/s and the server's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse  # noqa: E402

KEY = "sk-ah-bench-0123456789abcdefghij"
TOOLSET = [{"type": "agent_toolset_20260401"}]
EXPECTED = [
    "user.message",
    "session.status_running",
    "span.model_request_start",
    "agent.tool_use",
    "span.model_request_end",
    "agent.tool_result",
    "span.model_request_start",
    "agent.message",
    "span.model_request_end",
    "session.usage",
    "session.status_idle",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, fake_url: str, cpus: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    env |= {
        "AGENTHOST_DATA_DIR": str(data_dir),
        "AGENTHOST_API_KEY": KEY,
        "AGENTHOST_LOG_LEVEL": "warning",
        "ANTHROPIC_BASE_URL": fake_url,
        "ANTHROPIC_API_KEY": "fake",
        "AGENTHOST_ENGINE_POLL_SECONDS": "0.5",
    }
    pinned = ["taskset", "-c", cpus] if cpus else []
    proc = subprocess.Popen([*pinned, sys.executable, "-m", "agenthost", "serve", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx2.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def _serve_model(scripts: dict[str, list[Any]], urls: Any) -> None:
    fake = FakeAnthropic()
    for key, replies in scripts.items():
        fake.script(key, *replies)
    fake.start()
    gc.collect()
    gc.freeze()
    urls.put(fake.url)
    threading.Event().wait()  # until terminated


def start_model(scripts: dict[str, list[Any]]) -> tuple[multiprocessing.Process, str]:
    """The scripted model in its own process; its URL."""
    urls: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve_model, args=(scripts, urls), daemon=True)
    process.start()
    return process, urls.get(timeout=60)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_bash_call() -> list[Any]:
    return [ToolUse("bash", {"command": "true"}), Text("ok")]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads, none of its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def turn_overhead(
    client: anthropic.Anthropic,
    env_id: str,
    turns: int,
    key: str = "bench-overhead",
    tools: list[Any] | None = TOOLSET,
    server_pid: int | None = None,
) -> tuple[list[float], float | None]:
    """Wall ms per turn (send -> idle seen on a stream), and the server's CPU ms per turn when its pid is given."""
    agent = client.beta.agents.create(model="m", name="bench", system=key, tools=tools or [])
    session = client.beta.sessions.create(agent=agent.id, environment_id=env_id)
    idle = threading.Semaphore(0)
    stream = client.beta.sessions.events.stream(session.id)

    def read() -> None:
        try:
            for event in stream:
                if event.type == "session.status_idle":
                    idle.release()
        except httpx2.HTTPError:
            return  # closed at the end of the measurement

    threading.Thread(target=read, daemon=True).start()
    samples: list[float] = []
    cpu_start = 0.0
    for index in range(turns + 5):
        if index == 5 and server_pid is not None:
            cpu_start = cpu_seconds(server_pid)
        started = time.perf_counter()
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": f"turn {index}"}]}]
        )
        if not idle.acquire(timeout=30):
            raise SystemExit("a turn did not finish")
        if index >= 5:  # warm-up
            samples.append((time.perf_counter() - started) * 1000)
    cpu = (cpu_seconds(server_pid) - cpu_start) * 1000 / turns if server_pid is not None else None
    stream.close()
    return samples, cpu


def _subscriber_process(url: str, session_id: str, count: int, events: int, ready: Any, results: Any) -> None:
    """One client process holding ``count`` streams; reports commit-to-arrival latencies in ms.

    Plain sockets under one epoll, so the figure is the server's: a frame's arrival is stamped at
    the ``recv`` that completes its line, and JSON is parsed only after the measurement.
    """
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"GET /v1/sessions/{session_id}/events/stream HTTP/1.1\r\nHost: {host}\r\nx-api-key: {KEY}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    poller = select.epoll()
    sockets: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:  # the response has started: the stream is subscribed
            head += sock.recv(65536)
        sockets[sock.fileno()] = sock
        pending[sock.fileno()] = head.partition(b"\r\n\r\n")[2]
        poller.register(sock.fileno(), select.EPOLLIN)
    arrived: list[tuple[float, bytes]] = []
    for _ in range(count):
        ready.release()
    wanted = count * events
    while len(arrived) < wanted:
        for fd, _mask in poller.poll(60):
            data = sockets[fd].recv(65536)
            now = time.time()
            *lines, pending[fd] = (pending[fd] + data).split(b"\n")
            arrived.extend((now, line) for line in lines if line.startswith(b"data: ") and b"session.updated" in line)
    latencies = []
    for received, line in arrived:
        event = orjson.loads(line[6:])
        committed = datetime.fromisoformat(event["processed_at"].replace("Z", "+00:00")).timestamp()
        latencies.append((received - committed) * 1000)
    for sock in sockets.values():
        sock.close()
    results.put(latencies)


def delivery(
    client: anthropic.Anthropic, url: str, session_id: str, subscribers: int, processes: int, events: int = 20
) -> list[float]:
    """Subscribers spread over client processes, so the figure is the server's fan-out, not one client's parsing."""
    ready = multiprocessing.Semaphore(0)
    results: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_subscriber_process, args=(url, session_id, subscribers // processes, events, ready, results)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for _ in range(subscribers // processes * processes):
        ready.acquire(timeout=60)
    for index in range(events):
        client.beta.sessions.update(session_id, title=f"t{index}")
        time.sleep(0.05)
    latencies: list[float] = []
    for _ in workers:
        latencies += results.get(timeout=60)
    for worker in workers:
        worker.join(timeout=30)
    return latencies


async def concurrent_turns(url: str, env_id: str, sessions: int, prefix: str = "bench-many") -> tuple[float, int]:
    async with anthropic.AsyncAnthropic(
        base_url=url, api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        ids = []
        for index in range(sessions):
            key = f"{prefix}-{index}"
            agent = await client.beta.agents.create(model="m", name="many", system=key, tools=TOOLSET)
            ids.append((await client.beta.sessions.create(agent=agent.id, environment_id=env_id)).id)
        started = time.perf_counter()
        await asyncio.gather(
            *[
                client.beta.sessions.events.send(
                    sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
                )
                for sid in ids
            ]
        )
        pending = set(ids)
        while pending:
            await asyncio.sleep(0.1)
            for sid in list(pending):
                if (await client.beta.sessions.retrieve(sid)).status == "idle":
                    pending.discard(sid)
            if time.perf_counter() - started > 300:
                raise SystemExit(f"{len(pending)} sessions did not finish")
        elapsed = time.perf_counter() - started
        correct = 0
        for sid in ids:
            events = [e async for e in client.beta.sessions.events.list(sid)]
            listed = [e.type for e in events]
            correct += listed == EXPECTED
            if listed != EXPECTED:
                errors = [e.error.message for e in events if e.type == "session.error"]
                print(f"{sid}: {listed} {errors}", file=sys.stderr)
        return elapsed, correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--client-processes", type=int, default=4, help="processes holding the (b) streams")
    parser.add_argument("--figures", default="abc", help="which figures to measure (default: abc)")
    parser.add_argument(
        "--server-cpus", help="pin the server (and its sandboxes) to these CPUs, the rest of the bench to the others"
    )
    args = parser.parse_args()
    if args.server_cpus:
        others = set(range(os.cpu_count() or 1)) - {int(cpu) for cpu in args.server_cpus.split(",")}
        os.sched_setaffinity(0, others)
    scripts = {"bench-overhead": one_bash_call() * (args.turns + 5), "bench-text": [Text("ok")] * (args.turns + 5)}
    scripts |= {f"bench-many-{index}": one_bash_call() for index in range(args.sessions)}
    model, model_url = start_model(scripts)
    gc.collect()
    gc.freeze()  # the load generator's own full collections stalled the fake model ~100 ms now and then
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # sandbox uids pass through it to <data_dir>/sandboxes
        proc, url = start_server(Path(tmp), model_url, args.server_cpus)
        try:
            client = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
            env_id = client.beta.environments.create(name="bench").id
            if "a" in args.figures:
                samples, cpu = turn_overhead(client, env_id, args.turns, server_pid=proc.pid)
                print(
                    f"(a) one-bash-call turn, send -> idle on stream: p50 {statistics.median(samples):.1f} ms  "
                    f"p99 {pct(samples, 0.99):.1f} ms  server CPU {cpu:.2f} ms/turn  (n={len(samples)})"
                )
                samples, cpu = turn_overhead(client, env_id, args.turns, "bench-text", None, proc.pid)
                print(
                    f"(a) text turn, send -> idle on stream: p50 {statistics.median(samples):.1f} ms  "
                    f"p99 {pct(samples, 0.99):.1f} ms  server CPU {cpu:.2f} ms/turn  (n={len(samples)})"
                )
            if "b" in args.figures:
                agent = client.beta.agents.create(model="m", name="quiet")
                session = client.beta.sessions.create(agent=agent.id, environment_id=env_id)
                latencies = delivery(client, url, session.id, args.subscribers, args.client_processes)
                print(
                    f"(b) delivery to {args.subscribers} subscribers of one session ({args.client_processes} client "
                    f"processes): p50 {statistics.median(latencies):.2f} ms  p99 {pct(latencies, 0.99):.2f} ms  "
                    f"(n={len(latencies)})"
                )
            if "c" in args.figures:
                elapsed, correct = asyncio.run(concurrent_turns(url, env_id, args.sessions))
                peak = Path(f"/proc/{proc.pid}/status").read_text().split("VmHWM:")[1].split()[0]
                rss = Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]
                print(
                    f"(c) {args.sessions} one-bash-call turns at once: {correct}/{args.sessions} exact sequences, "
                    f"{elapsed:.1f} s, {args.sessions / elapsed:.1f} turns/s, server peak RSS "
                    f"{int(peak) / 1024:.0f} MiB, RSS after {int(rss) / 1024:.0f} MiB"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            model.terminate()


if __name__ == "__main__":
    main()
