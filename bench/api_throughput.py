"""/health, sessions.retrieve and sessions.create: throughput and server CPU per request of one `agenthost serve`.

Load comes from `wrk` (Debian package `wrk`), not from the SDK in threads: on a 2-core
machine the SDK tops out near 400-500 req/s whatever the server does (notes/BENCHMARKING.md).
The server and wrk share the machine, so the figures are a floor.

    python bench/api_throughput.py [--seconds 10] [--connections 16] [--database-url URL]

Prints one line per figure; copy them into docs/benchmarks.md with the machine and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from turns import cpu_seconds, free_port  # noqa: E402

KEY = "sk-ah-bench-0123456789abcdefghij"


def start_server(data_dir: Path, port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    env |= {"AGENTHOST_DATA_DIR": str(data_dir), "AGENTHOST_API_KEY": KEY, "AGENTHOST_LOG_LEVEL": "warning"}
    if database_url:
        env["AGENTHOST_DATABASE_URL"] = database_url
    proc = subprocess.Popen([sys.executable, "-m", "agenthost", "serve", "--port", str(port)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx2.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def wrk(url: str, seconds: int, connections: int, script: Path | None = None, pid: int = 0) -> dict[str, float]:
    """wrk's figures, and the server's CPU ms per request (from /proc: steadier than req/s on shared cores)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"x-api-key: {KEY}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    figures = {"rps": rps, "cpu_ms": cpu * 1000 / max(requests, 1)}
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            figures[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o711)  # sandbox uids pass through it to <data_dir>/sandboxes
        port = free_port()
        proc = start_server(Path(tmp), port, args.database_url)
        base = f"http://127.0.0.1:{port}"
        try:
            client = anthropic.Anthropic(base_url=base, api_key=KEY, _strict_response_validation=True)
            agent = client.beta.agents.create(
                model="claude-opus-4-7", name="bench", tools=[{"type": "agent_toolset_20260401"}]
            )
            env = client.beta.environments.create(name="bench")
            session = client.beta.sessions.create(agent=agent.id, environment_id=env.id)

            script = Path(tmp) / "create.lua"
            body = json.dumps({"agent": agent.id, "environment_id": env.id})
            script.write_text(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(body)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
            wrk(f"{base}/v1/sessions/{session.id}", 2, args.connections)  # warm-up
            health = wrk(f"{base}/health", args.seconds, args.connections, pid=proc.pid)
            retrieve = wrk(f"{base}/v1/sessions/{session.id}", args.seconds, args.connections, pid=proc.pid)
            create = wrk(f"{base}/v1/sessions", args.seconds, args.connections, script, pid=proc.pid)
            rss_kib = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    store = args.database_url.split(":")[0] if args.database_url else "sqlite"
    print(f"store={store} connections={args.connections} seconds={args.seconds} cores={os.cpu_count()}")
    for name, fig in (("/health", health), ("sessions.retrieve", retrieve), ("sessions.create", create)):
        print(
            f"{name}: {fig['rps']:.0f} req/s  p50 {fig.get('p50_ms', 0):.2f} ms  p99 {fig.get('p99_ms', 0):.2f} ms  "
            f"server CPU {fig['cpu_ms']:.3f} ms/request  non-2xx {fig['non_2xx']:.0f}"
        )
    print(f"server RSS after the run: {rss_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
