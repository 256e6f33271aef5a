"""What one abusive client costs `agenthost serve`: maximum-size fields listed over and over, and slow connections.

    python bench/abuse.py [--slow 2000] [--seconds 30] [--agents 6]

Starts a real `agenthost serve` (SQLite, no sandbox needed) and reads its memory from /proc.
Not a test: it prints figures for docs/reliability.md.

(a) stores agents whose every field is at its maximum (100,000-character system prompt, 128
    custom tools with 16,384-character descriptions, full metadata) and sessions of them (each
    session holds its agent's snapshot, with a 1,024-character title), then lists both with
    ``limit=100`` twenty times: server RSS before, peak, and the bytes of each page;
(b) holds ``--slow`` connections that send their request headers one byte a second (no key
    needed), for ``--seconds``: how many the server closed by the header deadline, its peak RSS,
    and `/health` latency meanwhile (p50, p99, failures), against the same probe without them.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from turns import free_port, pct  # noqa: E402

KEY = "sk-ah-bench-abuse-0123456789"


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(data_dir: Path, port: int, slow: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    env |= {
        "AGENTHOST_DATA_DIR": str(data_dir),
        "AGENTHOST_API_KEY": KEY,
        "AGENTHOST_SANDBOX": "local",
        "AGENTHOST_LOG_LEVEL": "warning",
        "AGENTHOST_MAX_CONNECTIONS": str(slow + 500),
        "ANTHROPIC_API_KEY": "unused",
    }
    log = (data_dir.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agenthost", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=raise_file_limit,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def big_fields(http: httpx2.Client, pid: int, agents: int) -> None:
    tool = {"type": "custom", "description": "d" * 16_384, "input_schema": {"type": "object"}}
    metadata = {f"k{i:02d}": "v" * 512 for i in range(16)}
    environment = http.post("/v1/environments", json={"name": "abuse", "description": "e" * 2048}).json()["id"]
    before = rss_mib(pid)
    for index in range(agents):
        body = {
            "model": "claude-opus-4-7",
            "name": "n" * 256,
            "system": "s" * 100_000,
            "description": "d" * 2048,
            "tools": [{**tool, "name": f"tool_{index}_{i}"} for i in range(128)],
            "metadata": metadata,
        }
        agent = http.post("/v1/agents", json=body).json()["id"]
        for _ in range(10):
            session = {
                "agent": agent,
                "environment_id": environment,
                "title": "\U0001f600" * 1024,
                "metadata": metadata,
            }
            assert http.post("/v1/sessions", json=session).status_code == 200
    stored = rss_mib(pid)
    sizes: dict[str, list[int]] = {"agents": [], "sessions": []}
    for _ in range(20):
        for listing in sizes:
            response = http.get(f"/v1/{listing}", params={"limit": 100})
            assert response.status_code == 200
            sizes[listing].append(len(response.content))
    print(f"(a) {agents} agents of ~{len(str(body)) / 1e6:.1f} MB and {agents * 10} sessions of them stored")
    print(f"(a) server RSS: at start {before:.0f} MiB, after storing {stored:.0f} MiB, ", end="")
    print(f"after 40 lists of limit=100 {rss_mib(pid):.0f} MiB, peak {rss_mib(pid, 'VmHWM'):.0f} MiB")
    for listing, seen in sizes.items():
        print(f"(a) GET /v1/{listing}?limit=100: {max(seen) / 2**20:.2f} MiB a page at most")


def probe_health(url: str, seconds: float) -> tuple[list[float], int]:
    latencies, failures = [], 0
    with httpx2.Client(timeout=10) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                ok = http.get(f"{url}/health").status_code == 200
            except httpx2.TransportError:
                ok = False
            latencies.append((time.perf_counter() - start) * 1000)
            failures += not ok
            time.sleep(0.1)
    return latencies, failures


def slow_clients(url: str, port: int, pid: int, count: int, seconds: float) -> None:
    base, base_failures = probe_health(url, 5)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sockets.append(sock)
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    stop = threading.Event()
    closed = [0]

    def trickle() -> None:
        position = 0
        while not stop.is_set() and position < len(request):
            for sock in sockets:
                try:
                    sock.send(request[position : position + 1])
                except OSError:
                    continue
            position += 1
            stop.wait(1)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    peak = 0.0
    latencies: list[float] = []
    failures = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        batch, failed = probe_health(url, 1)
        latencies += batch
        failures += failed
        peak = max(peak, rss_mib(pid))
    stop.set()
    for sock in sockets:
        try:
            if sock.recv(1) == b"":
                closed[0] += 1
        except BlockingIOError:
            pass
        except OSError:
            closed[0] += 1
        sock.close()
    print(
        f"(b) /health alone: p50 {statistics.median(base):.2f} ms, p99 {pct(base, 0.99):.2f} ms, {base_failures} failed"
    )
    print(f"(b) {count} connections sending headers at 1 byte/s for {seconds:.0f} s: {closed[0]} closed by the server")
    print(
        f"(b) /health meanwhile: p50 {statistics.median(latencies):.2f} ms, p99 {pct(latencies, 0.99):.2f} ms, ", end=""
    )
    print(f"{failures} of {len(latencies)} failed; server RSS peak {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--agents", type=int, default=6)
    args = parser.parse_args()
    raise_file_limit()
    tmp = Path(tempfile.mkdtemp(prefix="agenthost-abuse-"))
    port = free_port()
    server = start_server(tmp / "data", port, args.slow)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx2.Client(base_url=url, headers={"x-api-key": KEY}, timeout=120) as http:
            big_fields(http, server.pid, args.agents)
        slow_clients(url, port, server.pid, args.slow, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
