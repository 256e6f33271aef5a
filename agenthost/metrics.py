"""Prometheus metrics of one process (layer 0): what its API, engine and bus saw.

Most figures come from the events this process commits: the bus hands each committed batch
to :meth:`Metrics.observe` (after commit, as it hands them to streams), so a turn's start,
its end and stop reason, each model request's latency and tokens and each tool call's
latency are counted by the process that wrote them. The API counts its requests by route
and status; the engine, its takeovers and the sessions it runs or finds waiting; gauges
read the open streams and live sandboxes when scraped. Every process (API replica or
worker) serves its own figures; Prometheus sums them.

Labels are bounded: tools are labelled by built-in name, or ``mcp`` / ``custom`` for tools
an agent defines, and routes by their template, never by a client's id or text.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agenthost.schemas.events import CALL_TYPES, RESULT_FIELDS
from agenthost.schemas.tools import BUILTIN_TOOLS

MAX_OPEN = 10_000
"""Calls and model requests waiting for their end, remembered at most (the oldest are forgotten)."""

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The metrics of this process, in a registry of their own (several servers may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.turns_started = Counter("agenthost_turns_started", "Turns that began running", registry=registry)
        self.turns_ended = Counter(
            "agenthost_turns_ended", "Turns that went idle, by stop reason", ["stop_reason"], registry=registry
        )
        self.turns_rescheduled = Counter(
            "agenthost_turns_rescheduled", "Turns paused to retry a failed model request", registry=registry
        )
        self.model_requests = Histogram(
            "agenthost_model_request_seconds",
            "Model requests, by outcome (ok or error)",
            ["outcome"],
            buckets=SECONDS,
            registry=registry,
        )
        self.model_tokens = Counter(
            "agenthost_model_tokens", "Tokens of model requests, by kind", ["kind"], registry=registry
        )
        self.tool_calls = Histogram(
            "agenthost_tool_call_seconds",
            "Tool calls from the call to its result, by tool (mcp and custom for tools an agent defines)",
            ["tool"],
            buckets=SECONDS,
            registry=registry,
        )
        self.takeovers = Counter(
            "agenthost_leases_taken_over", "Turns taken over from a run whose lease lapsed", registry=registry
        )
        self.http_requests = Counter(
            "agenthost_http_requests",
            "HTTP requests, by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "agenthost_http_request_seconds",
            "HTTP request latency to the end of the answer (streams: until they close), by method and route",
            ["method", "route"],
            buckets=SECONDS,
            registry=registry,
        )
        self.sessions_waiting = Gauge(
            "agenthost_sessions_waiting",
            "Sessions with input and no live lease at the engine's last scan (at most 100 are counted)",
            registry=registry,
        )
        self._open: OrderedDict[str, tuple[float, str]] = OrderedDict()  # call or span id -> (start, label)
        self._rescheduled: set[str] = set()

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (streams open, sandboxes live, runs in this engine)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    # -- from committed events -------------------------------------------------------------------

    def observe(self, session_id: str, shown: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Count what a committed batch of one session's events says."""
        now = time.monotonic()
        for _, event in shown:
            kind = event["type"]
            if kind == "session.status_running":
                if session_id in self._rescheduled:
                    self._rescheduled.discard(session_id)  # the same turn, going on after its retry
                else:
                    self.turns_started.inc()
            elif kind == "session.status_rescheduled":
                self.turns_rescheduled.inc()
                self._rescheduled.add(session_id)
            elif kind == "session.status_idle":
                self._rescheduled.discard(session_id)  # an interrupt may end a turn while it waits to retry
                self.turns_ended.labels((event.get("stop_reason") or {}).get("type", "unknown")).inc()
            elif kind == "session.status_terminated":
                self._rescheduled.discard(session_id)
            elif kind == "span.model_request_start":
                self._remember(event["id"], now, "")
            elif kind == "span.model_request_end":
                self._model_request_ended(event, now)
            elif kind in CALL_TYPES:
                self._remember(event["id"], now, _tool_label(event))
            elif kind in RESULT_FIELDS and event.get("processed_at") is not None:
                began = self._open.pop(str(event.get(RESULT_FIELDS[kind])), None)
                if began is not None:
                    self.tool_calls.labels(began[1]).observe(now - began[0])

    def _remember(self, event_id: str, now: float, label: str) -> None:
        self._open[event_id] = (now, label)
        while len(self._open) > MAX_OPEN:
            self._open.popitem(last=False)

    def _model_request_ended(self, event: dict[str, Any], now: float) -> None:
        began = self._open.pop(str(event.get("model_request_start_id")), None)
        if began is not None:
            self.model_requests.labels("error" if event.get("is_error") else "ok").observe(now - began[0])
        usage = event.get("model_usage") or {}
        for kind in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            if usage.get(kind):
                self.model_tokens.labels(kind.removesuffix("_tokens")).inc(usage[kind])

    # -- from the API ----------------------------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)


def _tool_label(call: dict[str, Any]) -> str:
    if call["type"] == "agent.tool_use":
        name = call.get("name")
        return name if name in BUILTIN_TOOLS else "unknown"  # a name the model made up
    return "mcp" if call["type"] == "agent.mcp_tool_use" else "custom"
