"""Scale-out on PostgreSQL: turns per second with 1 and 2 engine workers, cross-replica delivery,
and the time from a worker's SIGKILL to its turn resuming elsewhere.

    python bench/scale.py [--sessions 200] [--subscribers 100] [--kills 3] [--lease 5]

Needs a PostgreSQL server (AGENTHOST_BENCH_PG_URL, default postgresql://127.0.0.1:5432/test);
each configuration gets a fresh database. Processes: one or two `agenthost serve --no-engine`
API replicas and N `agenthost worker`s, the scripted fake model in this process (as in
bench/turns.py), all on the same machine. Prints one line per figure for docs/benchmarks.md.

(a) N sessions each running a one-bash-call turn at once, with 1 worker and then 2 workers:
    wall time, turns/s and the ratio;
(b) delivery across replicas: events committed through replica A, streamed by subscribers
    connected to replica B (PostgreSQL NOTIFY, then a read of the log);
(c) SIGKILL of the worker running a turn (in a bash call) to ``session.status_running`` of
    the other worker taking it over, seen on the stream; bounded below by the lease length.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from turns import KEY, TOOLSET, concurrent_turns, delivery, free_port, one_bash_call, pct  # noqa: E402

from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse  # noqa: E402

PG_URL = os.environ.get("AGENTHOST_BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")


class Cluster:
    """API replicas and workers on one fresh PostgreSQL database."""

    def __init__(self, tmp: Path, fake_url: str, replicas: int, workers: int, lease: float):
        tmp.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.database = f"agenthost_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(f'CREATE DATABASE "{self.database}"'))
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
        self.env |= {
            "AGENTHOST_DATABASE_URL": PG_URL.rsplit("/", 1)[0] + "/" + self.database,
            "AGENTHOST_API_KEY": KEY,
            "AGENTHOST_LOG_LEVEL": "warning",
            "AGENTHOST_LEASE_SECONDS": str(lease),
            "AGENTHOST_ENGINE_POLL_SECONDS": "0.5",
            "AGENTHOST_SANDBOX_DIR": str(tmp / "sandboxes"),
            "ANTHROPIC_BASE_URL": fake_url,
            "ANTHROPIC_API_KEY": "fake",
        }
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[tuple[subprocess.Popen[bytes], Path]] = []
        for _ in range(replicas):
            port = free_port()
            self._spawn(["serve", "--no-engine", "--port", str(port)], tmp / f"api-{port}.log")
            self.urls.append(f"http://127.0.0.1:{port}")
            _wait(lambda url=self.urls[-1]: _healthy(url))
        for _ in range(workers):
            self.add_worker()

    def _spawn(self, args: list[str], log: Path, **extra: str) -> subprocess.Popen[bytes]:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agenthost", *args], env=self.env | extra, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def add_worker(self) -> None:
        log = self.tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        proc = self._spawn(["worker"], log, AGENTHOST_LOG_LEVEL="info")
        self.workers.append((proc, log))
        _wait(lambda: "engine ready" in log.read_text())

    def holder(self, session_id: str) -> tuple[subprocess.Popen[bytes], Path]:
        """The live worker whose log says it claimed the session last."""
        live = [(proc, log) for proc, log in self.workers if proc.poll() is None]
        for proc, log in live:
            if re.search(rf"claimed {session_id}\b", log.read_text()):
                return proc, log
        raise SystemExit(f"no live worker claimed {session_id}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/health", timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


def _wait(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for a process")
        time.sleep(0.05)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (and their waited-for children), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False).stdout.split()
    return [int(pid) for pid in found]


def throughput(
    tmp: Path, fake: FakeAnthropic, workers: int, sessions: int, lease: float
) -> tuple[float, int, dict[str, float]]:
    """Wall time and correct sequences of ``sessions`` turns at once, and the CPU seconds each part spent."""
    cluster = Cluster(tmp / f"tp{workers}", fake.url, 1, workers, lease)
    try:
        client = anthropic.Anthropic(base_url=cluster.urls[0], api_key=KEY, max_retries=0)
        env_id = client.beta.environments.create(name="bench").id
        api, engines = [cluster.procs[0].pid], [proc.pid for proc, _ in cluster.workers]
        before = {
            "api": _cpu_seconds(api),
            "workers": _cpu_seconds(engines),
            "postgres": _cpu_seconds(_postgres_pids()),
        }
        for index in range(sessions):
            fake.script(f"scale{workers}-{index}", *one_bash_call())
        bench_before = time.process_time()
        elapsed, correct = asyncio.run(concurrent_turns(cluster.urls[0], env_id, sessions, prefix=f"scale{workers}"))
        cpu = {
            "api": _cpu_seconds(api) - before["api"],
            "workers": _cpu_seconds(engines) - before["workers"],
            "postgres": _cpu_seconds(_postgres_pids()) - before["postgres"],
            "fake model + client": time.process_time() - bench_before,
        }
        return elapsed, correct, cpu
    finally:
        cluster.close()


def kill_to_resume(tmp: Path, fake: FakeAnthropic, kills: int, lease: float) -> list[float]:
    cluster = Cluster(tmp / "kill", fake.url, 1, 2, lease)
    samples: list[float] = []
    try:
        client = anthropic.Anthropic(base_url=cluster.urls[0], api_key=KEY, max_retries=0)
        env_id = client.beta.environments.create(name="bench").id
        for index in range(kills):
            key = f"bench-kill-{index}-{uuid.uuid4().hex[:6]}"
            fake.script(key, ToolUse("bash", {"command": f"sleep 3{index}0.5"}), Text("resumed"))
            agent = client.beta.agents.create(model="m", name="kill", system=key, tools=TOOLSET)
            session = client.beta.sessions.create(agent=agent.id, environment_id=env_id)
            with client.beta.sessions.events.stream(session.id) as stream:
                client.beta.sessions.events.send(
                    session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]
                )
                killed_at = 0.0
                running = 0
                for event in stream:
                    if event.type == "agent.tool_use":
                        _wait(lambda index=index: _sleeping(f"sleep 3{index}0.5"))
                        proc, _ = cluster.holder(session.id)
                        killed_at = time.perf_counter()
                        proc.kill()
                    elif event.type == "session.status_running":
                        running += 1
                        if running == 2:
                            samples.append((time.perf_counter() - killed_at) * 1000)
                    elif event.type == "session.status_idle":
                        break
            cluster.add_worker()  # two workers again for the next kill
    finally:
        cluster.close()
    return samples


def _sleeping(command: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"^{command}$"], capture_output=True, check=False).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--lease", type=float, default=5.0, help="AGENTHOST_LEASE_SECONDS of the workers")
    args = parser.parse_args()
    fake = FakeAnthropic().start()
    gc.collect()
    gc.freeze()  # the load generator's own full collections stalled the fake model ~100 ms now and then
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tmp.chmod(0o711)  # sandbox uids pass through it
        try:
            rates = {}
            for workers in (1, 2):
                elapsed, correct, cpu = throughput(tmp, fake, workers, args.sessions, args.lease)
                rates[workers] = args.sessions / elapsed
                spent = ", ".join(f"{part} {seconds:.1f}" for part, seconds in cpu.items())
                print(
                    f"(a) {workers} worker(s), {args.sessions} one-bash-call turns at once: "
                    f"{correct}/{args.sessions} exact sequences, {elapsed:.1f} s, {rates[workers]:.1f} turns/s; "
                    f"CPU seconds: {spent}"
                )
            print(f"(a) scaling ratio, 2 workers / 1 worker: {rates[2] / rates[1]:.2f}")

            cluster = Cluster(tmp / "fanout", fake.url, 2, 1, args.lease)
            try:
                client = anthropic.Anthropic(base_url=cluster.urls[0], api_key=KEY, max_retries=0)
                env_id = client.beta.environments.create(name="bench").id
                agent = client.beta.agents.create(model="m", name="quiet")
                session = client.beta.sessions.create(agent=agent.id, environment_id=env_id)
                latencies = delivery(client, cluster.urls[1], session.id, args.subscribers, args.client_processes)
                print(
                    f"(b) delivery across replicas (written on A, {args.subscribers} subscribers on B): "
                    f"p50 {statistics.median(latencies):.2f} ms  p99 {pct(latencies, 0.99):.2f} ms  "
                    f"(n={len(latencies)})"
                )
            finally:
                cluster.close()

            samples = kill_to_resume(tmp, fake, args.kills, args.lease)
            print(
                f"(c) SIGKILL of the running worker -> session.status_running on the other (lease {args.lease} s): "
                f"median {statistics.median(samples):.0f} ms, max {max(samples):.0f} ms (n={len(samples)})"
            )
        finally:
            fake.stop()


if __name__ == "__main__":
    main()
