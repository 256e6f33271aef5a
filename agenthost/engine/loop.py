"""One session run (layer 3): take the queued input, then loop model call -> tools -> decide.

The steps, each a method, with all state in the event log:

1. ``_start``: take queued input, write ``session.status_running``.
2. ``_answer_confirmations``: run or refuse the tool calls a ``requires_action`` pause waited on.
3. ``_model_call``: build the transcript from the log, call the model, log what it said.
4. ``_tools``: run allowed built-in tools; collect calls that need the client (confirmations,
   custom tools).
5. ``_finish``: ``session.usage`` + ``session.status_idle`` with the stop reason, lease released,
   in one transaction, unless new input arrived, in which case the turn goes on.

An interrupt, a lost lease or a model failure leaves the loop through exceptions that
the run turns into the documented event sequences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import sqlalchemy as sa

from agenthost.engine import setup, states
from agenthost.engine.commands import WORKER_TOOLS, answered
from agenthost.engine.hands import Hands, Interrupted
from agenthost.engine.journal import Carried, Journal, LeaseLost, LogReader
from agenthost.engine.memory_mounts import MemoryMirror, memory_prompt
from agenthost.engine.permissions import evaluate, refusal, waits_on_client
from agenthost.engine.previews import THINKING, Previews
from agenthost.engine.repositories import SessionRepositories
from agenthost.engine.session_files import SessionFiles
from agenthost.engine.skill_mounts import resolve as resolve_skills
from agenthost.engine.skill_mounts import skills_prompt
from agenthost.engine.transcript import INTERRUPTED, Transcript
from agenthost.errors import Unavailable
from agenthost.metrics import Metrics
from agenthost.providers.base import ModelError, ModelProviders, ModelRequest, ModelResponse
from agenthost.sandbox.base import (
    SandboxBackend,
    SecretInjection,
)
from agenthost.schemas.common import JSON
from agenthost.schemas.events import CALL_TYPES, ENGINE_CALLS, RESULT_FIELDS, WORK_TYPES
from agenthost.settings import Settings
from agenthost.store.files import Files
from agenthost.store.sessions import Logged, append_events, take_queued
from agenthost.store.skills import Skills
from agenthost.store.tables import environments, sessions
from agenthost.store.vaults import Credential, Vaults
from agenthost.tools.base import ToolOutput
from agenthost.tools.registry import Toolbox

T = TypeVar("T")
log = logging.getLogger("agenthost.engine")
READ_ONLY_TOOLS = frozenset({"read", "glob", "grep"})  # safe to run again after a crash


@dataclass(frozen=True)
class Stores:
    """The repositories a run reaches besides the session's own rows."""

    files: Files
    vaults: Vaults
    skills: Skills


_SETUP = (
    sa.select(sessions.c.agent, environments.c.fields, sessions.c.sandbox_backend)
    .join(environments, environments.c.id == sessions.c.environment_id)
    .where(sessions.c.id == sa.bindparam("sid"))
)
"""What a run reads once per turn besides the fenced row: the agent snapshot and the environment."""


class Run:
    """Runs turns of one session while it has input, then leaves it idle with the lease released."""

    def __init__(
        self,
        journal: Journal,
        providers: ModelProviders,
        sandboxes: SandboxBackend,
        settings: Settings,
        interrupt: asyncio.Event,
        stores: Stores | None = None,
        carried: Carried | None = None,
        metrics: Metrics | None = None,
    ):
        self.journal = journal
        self.metrics = metrics
        self.db = journal.db
        self.session_id = journal.lease.session_id
        self.providers = providers
        self.sandboxes = sandboxes
        self.settings = settings
        self.interrupt = interrupt
        self.agent: JSON = {}
        self.takeover = False
        self.self_hosted = False  # tools that touch files or run commands are the environment's worker's
        self.log = LogReader(journal.db, self.session_id)
        self.transcript = Transcript()
        self._carried = carried  # taken up once the run holds its lease: see ``_adopt``
        self.files = stores.files if stores is not None else None
        self.private_hosts = frozenset(settings.web_fetch_private_hosts)  # for every turn's toolbox
        self.vaults = stores.vaults if stores is not None else None
        self.skills = stores.skills if stores is not None else None
        self.skills_note: str | None = None
        self.workspace_id = ""
        self.vault_ids: list[str] = []
        self.credentials: list[Credential] | None = None  # the session's vaults, read at the run's first turn
        self.secrets: tuple[SecretInjection, ...] = ()
        self.memory_note: str | None = None
        repositories = SessionRepositories(journal.db, self.vaults, self.session_id, settings.github_url)
        self.hands = Hands(self.session_id, journal, sandboxes, repositories, self._interruptible)

    def _adopt(self) -> None:
        """Start from what the session's previous run in this process read, when no other run came between.

        Called once the lease is held, before anything was read from the log: the fresh reader is replaced."""
        carried, self._carried = self._carried, None
        if carried is not None and carried.generation == self.journal.lease.generation - 1:
            self.log, self.transcript = carried.log, carried.transcript
            if carried.session_files is not None:
                self.hands.session_files = carried.session_files

    def carry(self) -> Carried:
        """What the session's next run in this process may start from (``Carried``)."""
        return Carried(self.journal.lease.generation, self.log, self.transcript, self.hands.session_files)

    async def execute(self) -> None:
        try:
            await self._turns()
        finally:
            for connection in (self.hands.mcp or {}).values():
                await connection.close()

    async def _turns(self) -> None:
        while True:
            taken = await self._start()
            if taken is None:
                return
            try:
                stop = await self._turn(taken)
            except Interrupted:
                stop = await self._after_interrupt()
            except (LeaseLost, asyncio.CancelledError, Unavailable):
                raise  # the database is away: what was committed is in the log, which the next run continues
            except Exception as exc:  # a bug: end the turn visibly instead of leaving the session running
                log.exception("turn of %s failed", self.session_id)
                stop = await self._fail(
                    "unknown_error", f"internal error in agenthost: {type(exc).__name__}", "exhausted"
                )
            if stop == "released":
                return

    # -- step 1 ----------------------------------------------------------------------------------

    async def _start(self) -> list[JSON] | None:
        """Take queued input; None when there is no work (the lease is released)."""

        def work(conn: sa.Connection, row: Any, now: int, published: list[Logged]) -> list[JSON] | None:
            self.agent, environment, backend = conn.execute(_SETUP, {"sid": self.session_id}).one()
            self._sandbox_spec(environment.get("config", {}), backend, row.resources)
            if self.hands.memory is None:
                self.hands.memory = MemoryMirror(self.db, self.session_id, row.resources)
                self.memory_note = memory_prompt(row.resources)
            self.self_hosted = environment.get("config", {}).get("type") == "self_hosted"
            self.workspace_id, self.vault_ids = row.workspace_id, list(row.vault_ids)
            if self.hands.session_files is None and self.files is not None:
                self.hands.session_files = SessionFiles(
                    self.files, row.workspace_id, self.session_id, self.settings.max_file_bytes
                )
            if row.archived_at is not None or row.status == "terminated":
                states.release(conn, self.session_id, now)
                return None
            resuming = row.blocked_on == []  # every tool call a pause waited on has been answered
            if row.blocked_on:
                states.release(conn, self.session_id, now)  # still waiting on the client
                return None
            taken = take_queued(conn, self.session_id, now, published)
            # A run began (running_since) and never ended: this run takes the turn over and finishes it.
            self.takeover = row.status in ("running", "rescheduling") and row.running_since is not None
            if self.takeover and self.metrics is not None:
                self.metrics.takeovers.inc()
            if not resuming and not self.takeover and not any(event["type"] in WORK_TYPES for event in taken):
                states.release(conn, self.session_id, now)  # only interrupts: nothing to run
                return None
            states.begin(
                conn, self.session_id, row, now, published, backend=self.sandboxes.name if backend is None else None
            )
            return taken

        self.interrupt.clear()
        taken = await self.journal.transact(work)
        self._adopt()
        self.hands.toolbox = Toolbox(
            self.agent,
            private_hosts=self.private_hosts,
            grep_timeout=self.settings.grep_timeout_seconds,
            search_url=self.settings.web_search_url,
        )
        if taken is not None:
            if self.credentials is None:
                await self._resolve_credentials()
            self.hands.spec = replace(self.hands.spec, secrets=self.secrets)
            await self._connect_mcp()
            if self.hands.skill_versions is None:
                self.hands.skill_versions = await resolve_skills(self.skills, self.workspace_id, self.agent)
                self.skills_note = skills_prompt(self.hands.skill_versions)
        return taken

    async def _resolve_credentials(self) -> None:
        """Read the session's vaults once per run: MCP credentials, and the variables the sandbox gets."""
        network = self.hands.spec.network
        found, self.secrets, errors = await setup.credentials(
            self.vaults, self.workspace_id, self.vault_ids, self.session_id, network
        )
        self.credentials = found
        for error in errors:  # one transaction each, as before: each is its own event
            await self.journal.append([error])

    async def _connect_mcp(self) -> None:
        """Connect the agent's MCP servers once per run and offer their tools (one that fails: an error event)."""
        if self.hands.mcp is None:
            self.hands.mcp, errors = await setup.mcp_servers(self.agent, self.vaults, self.credentials or [])
            for error in errors:
                await self.journal.append([error])
        for name, connection in self.hands.mcp.items():
            self.hands.toolbox.add_mcp(name, connection.tools)

    def _sandbox_spec(self, config: JSON, backend: str | None, resources: list[JSON]) -> None:
        """What the session's sandbox must be, from its environment (read at every run: changes apply next time)."""
        self.hands.spec = setup.sandbox_spec(self.session_id, config, self.agent, resources)
        self.hands.sandbox_refusal = setup.sandbox_refusal(backend, self.sandboxes.name)

    # -- the turn --------------------------------------------------------------------------------

    async def _turn(self, taken: list[JSON]) -> str:
        if self.takeover:
            blocking = await self._recover()
            if blocking:
                stop = await self._finish({"type": "requires_action", "event_ids": blocking})
                if stop != "continue":
                    return stop
        waiting = await self._answer_confirmations([e for e in taken if e["type"] == "user.tool_confirmation"])
        if waiting:  # confirmed calls that the worker now runs
            stop = await self._finish({"type": "requires_action", "event_ids": waiting})
            if stop != "continue":
                return stop
        if self.hands.setup_failure is not None:
            failure, self.hands.setup_failure = self.hands.setup_failure, None
            return await self._fail("unknown_error", failure, "exhausted")
        calls = 0
        while True:
            if calls >= self.settings.max_model_calls:
                return await self._fail(
                    "unknown_error", f"the turn made {calls} model calls without ending; stopped", "exhausted"
                )
            calls += 1
            answer = await self._model_call()
            if answer is None:
                return await self._finish({"type": "retries_exhausted"}, mode="flush")
            tool_uses, refused, stop = answer
            if stop == "continue" and not tool_uses:
                continue  # the turn ended, but input came meanwhile: the model reads it at once
            if stop is not None:  # ended, or paused with the calls, in the same transaction
                return stop
            blocking = await self._tools(tool_uses)
            if self.hands.setup_failure is not None:  # e.g. a package that does not install: the turn cannot go on
                failure, self.hands.setup_failure = self.hands.setup_failure, None
                return await self._fail("unknown_error", failure, "exhausted")
            if blocking:
                stop = await self._finish({"type": "requires_action", "event_ids": blocking})
                if stop != "continue":
                    return stop
                continue  # every call was answered before the pause: the model reads the results
            if refused:  # a response without calls ended the turn already (``_log_response``)
                return await self._finish({"type": "refusal"})

    async def _recover(self) -> list[str]:
        """Close what a run that stopped mid-turn left open; return the calls that still need the client.

        A model call that was in flight gets its ``span.model_request_end`` with ``is_error``.
        A built-in call that was running (allowed, or confirmed) gets an explicit error result: it may
        or may not have completed, and is never run again, unless it only reads (``read``, ``glob``,
        ``grep``): those are run (again). Custom calls and unconfirmed ``ask`` calls were waiting on
        the client and wait again.
        """
        log = await self.log.read()
        ended = {e["model_request_start_id"] for e in log if e["type"] == "span.model_request_end"}
        cut_off = [e["id"] for e in log if e["type"] == "span.model_request_start" and e["id"] not in ended]
        if cut_off:  # the model call in flight died with its run: its span ends as failed
            await self.journal.append([_span_end(start_id, None, is_error=True) for start_id in cut_off])
        answered = {e[RESULT_FIELDS[e["type"]]] for e in log if e["type"] in RESULT_FIELDS}
        confirmations = {e["tool_use_id"]: e for e in log if e["type"] == "user.tool_confirmation"}
        open_calls = [e for e in log if e["type"] in CALL_TYPES and e["id"] not in answered]
        blocking: list[str] = []
        for index, event in enumerate(open_calls):
            confirmation = confirmations.get(event["id"])
            permission = event.get("evaluated_permission")
            if event["type"] == "agent.custom_tool_use" or (permission == "ask" and confirmation is None):
                blocking.append(event["id"])
            elif permission == "deny" or (confirmation is not None and confirmation["result"] != "allow"):
                await self._tool_result(event, refusal(event, confirmation))
            elif self._on_worker(event):
                blocking.append(event["id"])  # the worker runs it (or ran it): its result is still to come
            elif event["type"] == "agent.tool_use" and event["name"] in READ_ONLY_TOOLS:
                try:
                    output = await self.hands.run(event, self.agent)
                except Interrupted:
                    await self._tool_result(event, ToolOutput.text("Interrupted by the user.", is_error=True))
                    for later in open_calls[index + 1 :]:
                        if later["type"] in ENGINE_CALLS:
                            await self._tool_result(later, ToolOutput.text(INTERRUPTED, is_error=True))
                    await self._close_worker_calls(blocking, open_calls)
                    raise
                await self._tool_result(event, output)
            else:
                await self._tool_result(
                    event,
                    ToolOutput.text(
                        "This tool call was cut off when agenthost's engine stopped; it may or may not have "
                        "completed and was not run again.",
                        is_error=True,
                    ),
                )
        return blocking

    async def _answer_confirmations(self, confirmations: list[JSON]) -> list[str]:
        """Run or refuse the calls the user answered; return the confirmed ones a worker runs instead."""
        if not confirmations:
            return []
        log = {event["id"]: event for event in await self.log.read()}
        answered = [(log[c["tool_use_id"]], c) for c in confirmations if c["tool_use_id"] in log]
        waiting: list[str] = []
        for index, (tool_use, confirmation) in enumerate(answered):
            if confirmation["result"] == "allow" and self._on_worker(tool_use):
                waiting.append(tool_use["id"])
                continue
            if confirmation["result"] == "allow":
                try:
                    output = await self.hands.run(tool_use, self.agent)
                except Interrupted:
                    await self._tool_result(tool_use, ToolOutput.text("Interrupted by the user.", is_error=True))
                    for later, _ in answered[index + 1 :]:
                        await self._tool_result(later, ToolOutput.text(INTERRUPTED, is_error=True))
                    await self._close_worker_calls(waiting, [call for call, _ in answered])
                    raise
            else:
                output = refusal(tool_use, confirmation)
            await self._tool_result(tool_use, output)
        return waiting

    async def _close_worker_calls(self, call_ids: list[str], calls: list[JSON]) -> None:
        """An interrupt ends the turn: calls left to the worker get an error result, so a late answer
        from the worker is refused instead of landing in a later turn."""
        for call in calls:
            if call["id"] in call_ids and self._on_worker(call):
                await self._tool_result(call, ToolOutput.text(INTERRUPTED, is_error=True))

    def _on_worker(self, tool_use: JSON) -> bool:
        """Whether the session's self-hosted worker runs this call (web tools run here, in the server)."""
        return self.self_hosted and tool_use["type"] == "agent.tool_use" and tool_use["name"] in WORKER_TOOLS

    # -- step 3: the model -----------------------------------------------------------------------

    async def _model_call(self) -> tuple[list[JSON], bool, str | None] | None:
        """Call the model (with retries) and log its output, or None on failure.

        Returns the tool-use events, whether the model refused, and how the turn stopped when the
        response ended it at once (every call waits on someone else: see ``_log_response``).
        """
        attempt = 0
        while True:
            log, start = await self._open_span()
            request = self._request(log)
            previews = Previews(lambda frame: self.journal.bus.preview(self.session_id, frame))
            provider = self.providers.for_model(request.model)
            try:
                response = await self._interruptible(provider.complete(request, previews))
            except Interrupted:
                await self.journal.append([_span_end(start["id"], None, is_error=False)])
                raise
            except ModelError as exc:
                await self.journal.append([_span_end(start["id"], None, is_error=True)])
                attempt += 1
                if not exc.retryable or attempt > self.settings.model_retries:
                    await self._error(exc.kind, exc.message, "exhausted")
                    return None
                await self._reschedule(exc, attempt)
                continue
            return await self._log_response(start["id"], response, previews.ids)

    async def _open_span(self) -> tuple[list[JSON], JSON]:
        """Log ``span.model_request_start`` and read what the model is to see, in one transaction.

        Every writer of a session's events holds its row lock, which the fence takes first, so the
        read sees the log exactly as it stands when the span starts.
        """

        def work(conn: sa.Connection, _row: Any, now: int, published: list[Logged]) -> tuple[list[Any], JSON]:
            logged = append_events(
                conn, self.session_id, [{"type": "span.model_request_start"}], processed=True, now=now
            )
            published.extend(logged)
            return self.log.fetch(conn), logged[0][1]

        rows, start = await self.journal.transact(work)
        return self.log.absorb(rows), start

    def _request(self, log: list[JSON]) -> ModelRequest:
        agent = self.agent
        model = agent["model"]
        system = [{"type": "text", "text": agent["system"]}] if agent.get("system") else []
        system += [{"type": "text", "text": note} for note in (self.memory_note, self.skills_note) if note]
        return ModelRequest(
            model=model["id"],
            system=system,
            messages=self.transcript.messages(log),
            tools=self.hands.toolbox.definitions,
            max_tokens=self.settings.max_tokens,
            effort=(model.get("effort") or {}).get("type"),
            speed=model.get("speed"),
        )

    async def _reschedule(self, exc: ModelError, attempt: int) -> None:
        await self._error(exc.kind, exc.message, "retrying")
        event, status = states.RESCHEDULED
        await self.journal.append([event], status=status)
        delay = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2 ** (attempt - 1))
        await self._interruptible(asyncio.sleep(delay))
        event, status = states.RESUMED
        await self.journal.append([event], status=status)

    async def _log_response(
        self, start_id: str, response: ModelResponse, previewed: dict[int, str]
    ) -> tuple[list[JSON], bool, str | None]:
        """Log what the model said; events that were previewed keep the ids their previews announced."""
        payloads: list[JSON] = []
        ids: list[str | None] = []
        for index, block in enumerate(response.content):
            kind = block.get("type")
            if kind in THINKING:
                if not payloads or payloads[-1]["type"] != "agent.thinking":
                    payloads.append({"type": "agent.thinking"})
                    ids.append(previewed.get(index))
            elif kind == "text" and (block.get("text") or "").strip():
                payloads.append({"type": "agent.message", "content": [{"type": "text", "text": block["text"]}]})
                ids.append(previewed.get(index))
            elif kind == "tool_use":
                payloads.append(self._tool_use_event(block))
                ids.append(None)
        payloads.append(_span_end(start_id, response, is_error=False))
        usage = response.usage

        def add_usage(row: Any, _now: int) -> JSON:
            total = dict(row.usage)
            total["input_tokens"] = (total.get("input_tokens") or 0) + usage.input_tokens
            total["output_tokens"] = (total.get("output_tokens") or 0) + usage.output_tokens
            total["cache_read_input_tokens"] = (
                total.get("cache_read_input_tokens") or 0
            ) + usage.cache_read_input_tokens
            creation = dict(total.get("cache_creation") or {})
            creation["ephemeral_5m_input_tokens"] = (
                creation.get("ephemeral_5m_input_tokens") or 0
            ) + usage.cache_creation_input_tokens
            creation.setdefault("ephemeral_1h_input_tokens", 0)
            total["cache_creation"] = creation
            return total

        calls = [p for p in payloads if p["type"] in CALL_TYPES]
        refused = response.stop_reason == "refusal"
        # When every call waits on someone else (the client, a confirmation, the worker), the pause is
        # written with the calls: an answer can never reach the log before the session says it waits.
        # A response without calls ends the turn in the same transaction.
        if calls:
            ending = {"type": "requires_action"} if all(self._waits(call) for call in calls) else None
        else:
            ending = {"type": "refusal" if refused else "end_turn"}

        def work(conn: sa.Connection, row: Any, now: int, published: list[Logged]) -> tuple[list[JSON], str | None]:
            total = add_usage(row, now)
            conn.execute(sessions.update().where(sessions.c.id == self.session_id).values(updated_at=now, usage=total))
            logged = append_events(conn, self.session_id, payloads, processed=True, now=now, ids=ids)
            published.extend(logged)
            uses = [e for _, e in logged if e["type"] in CALL_TYPES]
            if ending is None:
                return uses, None
            if uses:
                ending["event_ids"] = [e["id"] for e in uses]
            # A microsecond later: input taken at the end sorts after the response in the log, as it is shown.
            ended = states.end(
                conn,
                self.session_id,
                row,
                now + 1,
                published,
                ending,
                "normal",
                self_hosted=self.self_hosted,
                usage=total,
            )
            return uses, ended

        tool_uses, stop = await self.journal.transact(work)
        return tool_uses, refused, stop

    def _waits(self, call: JSON) -> bool:
        """Whether the engine leaves this call to someone else: the client, a confirmation, or the worker."""
        if waits_on_client(call):
            return True
        return call.get("evaluated_permission") == "allow" and self._on_worker(call)

    def _tool_use_event(self, block: JSON) -> JSON:
        name, tool_input = block["name"], block.get("input") or {}
        spec = self.hands.toolbox.spec(name)
        if spec is not None and spec.kind == "custom":
            return {"type": "agent.custom_tool_use", "name": name, "input": tool_input, "session_thread_id": None}
        event: JSON = {"type": "agent.tool_use", "name": name, "input": tool_input, "session_thread_id": None}
        if spec is not None and spec.kind == "mcp":
            event = {**event, "type": "agent.mcp_tool_use", "mcp_server_name": spec.server, "name": spec.tool}
        return event | evaluate(spec)

    # -- step 4: tools ---------------------------------------------------------------------------

    async def _tools(self, tool_uses: list[JSON]) -> list[str]:
        blocking: list[str] = []
        for index, tool_use in enumerate(tool_uses):
            if waits_on_client(tool_use):
                blocking.append(tool_use["id"])
                continue
            if tool_use.get("evaluated_permission") == "deny":
                await self._tool_result(tool_use, refusal(tool_use, None))
                continue
            if self._on_worker(tool_use):
                blocking.append(tool_use["id"])  # the worker sees the call on its stream and answers it
                continue
            try:
                output = await self.hands.run(tool_use, self.agent)
            except Interrupted:
                await self._tool_result(tool_use, ToolOutput.text("Interrupted by the user.", is_error=True))
                for later in tool_uses[index + 1 :]:
                    if later["type"] in ENGINE_CALLS and later.get("evaluated_permission") != "ask":
                        await self._tool_result(later, ToolOutput.text(INTERRUPTED, is_error=True))
                await self._close_worker_calls(blocking, tool_uses)  # earlier calls left to the worker
                raise
            await self._tool_result(tool_use, output)
        return blocking

    async def _tool_result(self, call: JSON, output: ToolOutput) -> None:
        """Log the engine's result for a call, unless the call has one already (a worker answered it).

        Only a self-hosted session's worker answers built-in calls besides the engine, so only there is
        the log looked at first.
        """
        tool_use_id = call["id"]
        if call["type"] == "agent.mcp_tool_use":
            result = {"type": "agent.mcp_tool_result", "mcp_tool_use_id": tool_use_id, "content": output.content}
        else:
            result = {"type": "agent.tool_result", "tool_use_id": tool_use_id, "content": output.content}
        result["is_error"] = output.is_error

        def work(conn: sa.Connection, _row: Any, now: int, published: list[Logged]) -> None:
            if not (self.self_hosted and answered(conn, self.session_id, tool_use_id)):
                published.extend(append_events(conn, self.session_id, [result], processed=True, now=now))

        await self.journal.transact(work)

    # -- step 5: ending --------------------------------------------------------------------------

    async def _finish(self, stop_reason: JSON, *, mode: states.EndMode = "normal") -> str:
        """End the turn idle with ``stop_reason`` in one transaction (``states.end``: modes and answers)."""

        def work(conn: sa.Connection, row: Any, now: int, published: list[Logged]) -> str:
            return states.end(
                conn, self.session_id, row, now, published, stop_reason, mode, self_hosted=self.self_hosted
            )

        return await self.journal.transact(work)

    async def _after_interrupt(self) -> str:
        """The interrupt takes effect: it is marked processed and the turn ends with end_turn."""

        def take_interrupts(conn: sa.Connection, _row: Any, now: int, published: list[Logged]) -> None:
            take_queued(conn, self.session_id, now, published, types=("user.interrupt",))

        await self.journal.transact(take_interrupts)
        return await self._finish({"type": "end_turn"}, mode="interrupt")

    async def _error(self, kind: str, message: str, retry_status: str) -> None:
        error = {"type": kind, "message": message, "retry_status": {"type": retry_status}}
        await self.journal.append([{"type": "session.error", "error": error}])

    async def _fail(self, kind: str, message: str, retry_status: str) -> str:
        await self._error(kind, message, retry_status)
        return await self._finish({"type": "retries_exhausted"}, mode="flush")

    # -- helpers ---------------------------------------------------------------------------------

    async def _interruptible(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless an interrupt arrives first, in which case it is cancelled."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self.interrupt.wait())
        try:
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise Interrupted


def _span_end(start_id: str, response: ModelResponse | None, *, is_error: bool) -> JSON:
    usage = response.usage if response is not None else None
    return {
        "type": "span.model_request_end",
        "model_request_start_id": start_id,
        "is_error": is_error,
        "model_usage": {
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens if usage else 0,
            "cache_read_input_tokens": usage.cache_read_input_tokens if usage else 0,
            "speed": None,
        },
    }
