"""The floor under figure (b): how fast this machine can hand one frame to N streams at all.

    python bench/fanout_floor.py [--subscribers 100] [--client-processes 4] [--server-cpus 0]

A bare uvloop server with no framework and no database answers N stream requests, then 20
times stamps a `session.updated`-shaped frame with the current time and writes it to every
connection in one loop (`transport.write`, one `send` system call each). The subscribers are
bench/turns.py's own (plain sockets under one epoll per client process, stamped at `recv`), so
the figure is comparable with (b): whatever (b) measures above it is agenthost's commit,
publish and per-stream work.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from turns import _subscriber_process, free_port, pct  # noqa: E402

EVENTS = 20
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"


class _Stream(asyncio.Protocol):
    def __init__(self, streams: list[asyncio.Transport]):
        self.streams = streams
        self.request = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.request += data
        if b"\r\n\r\n" in self.request and self.transport not in self.streams:
            self.transport.write(HEAD)
            self.streams.append(self.transport)


async def _serve(port: int, subscribers: int, listening: Any) -> None:
    streams: list[asyncio.Transport] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Stream(streams), "127.0.0.1", port)
    listening.set()
    while len(streams) < subscribers:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)  # every client is in its epoll wait
    for index in range(EVENTS):
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        data = b'{"type":"session.updated","title":"t%d","processed_at":"%s"}' % (index, stamp.encode())
        frame = b"id: sevt_%d\nevent: session.updated\ndata: %s\n\n" % (index, data)
        for transport in streams:
            transport.write(frame)
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    server.close()


def _server_process(port: int, subscribers: int, listening: Any, cpus: str | None) -> None:
    if cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    uvloop.run(_serve(port, subscribers, listening))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--server-cpus", help="pin the server to these CPUs, the clients to the others")
    args = parser.parse_args()
    port = free_port()
    listening = multiprocessing.Event()
    server = multiprocessing.Process(target=_server_process, args=(port, args.subscribers, listening, args.server_cpus))
    server.start()
    listening.wait(30)
    if args.server_cpus:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {int(cpu) for cpu in args.server_cpus.split(",")})
    ready = multiprocessing.Semaphore(0)
    results: Any = multiprocessing.Queue()
    each = args.subscribers // args.client_processes
    clients = [
        multiprocessing.Process(
            target=_subscriber_process, args=(f"http://127.0.0.1:{port}", "floor", each, EVENTS, ready, results)
        )
        for _ in range(args.client_processes)
    ]
    for client in clients:
        client.start()
    latencies: list[float] = []
    for _ in clients:
        latencies += results.get(timeout=60)
    server.join(timeout=30)
    print(
        f"floor: one frame to {each * args.client_processes} streams ({args.client_processes} client processes, "
        f"server cpus {args.server_cpus or 'any'}): p50 {statistics.median(latencies):.2f} ms  "
        f"p99 {pct(latencies, 0.99):.2f} ms  (n={len(latencies)})"
    )


if __name__ == "__main__":
    main()
