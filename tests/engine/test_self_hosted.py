"""A self-hosted environment end to end: the official SDK's own worker runs the session's tools.

`client.beta.environments.work.worker(...)` from `anthropic` 2.10.0, unmodified, with an
environment key: it polls the work item, heartbeats it, runs `bash` and `read` in its own
directory, posts `user.tool_result`s, and force-stops the item when the session has been idle
for `max_idle`. The engine keeps the agent loop and waits (requires_action) for the results.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from agenthost.testing.fake_anthropic import Text, ToolUse
from tests.conftest import LiveServer, Script, sdk, wait_until
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say


class SdkWorker:
    """The SDK's EnvironmentWorker polling in a thread of its own, until stopped."""

    def __init__(self, server: LiveServer, environment_id: str, key: str, workdir: Path):
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

        async def run() -> None:
            async with anthropic.AsyncAnthropic(
                base_url=server.base_url, api_key=key, max_retries=0, _strict_response_validation=True
            ) as client:
                worker = client.beta.environments.work.worker(
                    environment_id=environment_id,
                    environment_key=key,
                    workdir=workdir,
                    max_idle=1.0,
                    memory_sync_interval=None,
                    worker_id="test-worker",
                )
                await worker.run()

        def main() -> None:
            self._task = self._loop.create_task(run())
            try:
                self._loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # reported by the test
                self.error = exc
            finally:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        wait_until(lambda: self._task is not None)
        assert self._task is not None
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=30)


@pytest.fixture
def environment(client: anthropic.Anthropic) -> Any:
    return client.beta.environments.create(name="own-machines", config={"type": "self_hosted"})


@pytest.fixture
def worker(server: LiveServer, environment: Any, tmp_path: Path) -> Iterator[tuple[SdkWorker, Path]]:
    workdir = tmp_path / "worker"
    workdir.mkdir()
    running = SdkWorker(server, environment.id, server.environment_key(environment.id), workdir)
    yield running, workdir
    running.stop()
    assert running.error is None, running.error


def test_the_sdks_own_worker_runs_a_self_hosted_sessions_tools(
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    worker: tuple[SdkWorker, Path],
    recorders: list[Recorder],
) -> None:
    _, workdir = worker
    script(
        ToolUse(
            "bash", {"command": "echo from the worker > note.txt && pwd"}, more=[("read", {"file_path": "note.txt"})]
        ),
        Text("Done on your machine."),
    )
    agent = script.agent(client, tools=[TOOLSET])
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("use your own machine")])
    streamed = recorder.wait(lambda evs: [e.type for e in evs].count("session.status_idle") == 3, timeout=30)
    listed = assert_stream_equals_list(streamed, client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "agent.tool_use",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",  # waiting for the worker: requires_action on both calls
        "user.tool_result",
        "session.status_idle",  # one answered: waiting on the other
        "user.tool_result",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    bash_call, read_call = listed[3], listed[4]
    assert listed[7].stop_reason.type == "requires_action"
    assert listed[7].stop_reason.event_ids == [bash_call.id, read_call.id]
    assert listed[9].stop_reason.event_ids == [read_call.id]
    bash_result, read_result = listed[8], listed[10]
    assert bash_result.tool_use_id == bash_call.id and bash_result.is_error is False
    ran_in = Path(bash_result.content[0].text.strip())
    assert ran_in == workdir or workdir in ran_in.parents  # the worker's own directory, not a server sandbox
    assert (ran_in / "note.txt").read_text() == "from the worker\n"
    assert read_result.tool_use_id == read_call.id and "from the worker" in read_result.content[0].text
    assert listed[-1].stop_reason.type == "end_turn"
    # What the model saw next: both results, as tool_result blocks for its calls.
    last = script.requests()[-1]["messages"][-1]["content"]
    assert [(block["type"], block["tool_use_id"]) for block in last] == [
        ("tool_result", bash_call.id),
        ("tool_result", read_call.id),
    ]

    # Idle past max_idle: the worker lets the session go and stops its work item.
    work = client.beta.environments.work
    wait_until(lambda: [item.state for item in work.list(environment.id)] == ["stopped"], timeout=20)
    assert work.stats(environment.id).depth == 0


def test_a_worker_answers_a_confirmed_call_while_the_session_still_waits_on_the_client(
    server: LiveServer, client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    """Asked bash + a custom tool: the user confirms bash, the worker answers it at once (the session still
    waits for the custom result), then the client answers: the turn goes on with both results."""
    asking = {
        "type": "agent_toolset_20260401",
        "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}],
    }
    lookup = {"type": "custom", "name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}
    script(ToolUse("bash", {"command": "uptime"}, more=[("lookup", {"q": "x"})]), Text("Both in."))
    agent = script.agent(client, tools=[asking, lookup])
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    client.beta.sessions.events.send(session.id, events=[say("look")])
    paused = recorder.idles()
    bash_call, lookup_call = [e for e in paused if e.type in ("agent.tool_use", "agent.custom_tool_use")]
    assert paused[-1].stop_reason.event_ids == [bash_call.id, lookup_call.id]
    with sdk(server, server.environment_key(environment.id)) as worker:
        result = {"type": "user.tool_result", "tool_use_id": bash_call.id, "content": [{"type": "text", "text": "up"}]}
        with pytest.raises(anthropic.BadRequestError) as unconfirmed:  # never before the user said yes
            worker.beta.sessions.events.send(session.id, events=[result])
        assert "has not been confirmed" in unconfirmed.value.message
        confirm = {"type": "user.tool_confirmation", "tool_use_id": bash_call.id, "result": "allow"}
        client.beta.sessions.events.send(session.id, events=[confirm])
        recorder.idles(2)  # shown again, waiting on the custom call alone
        worker.beta.sessions.events.send(session.id, events=[result])
        with pytest.raises(anthropic.BadRequestError):  # once only
            worker.beta.sessions.events.send(session.id, events=[result])
    answer = {"type": "user.custom_tool_result", "custom_tool_use_id": lookup_call.id, "content": []}
    client.beta.sessions.events.send(session.id, events=[answer])
    listed = assert_stream_equals_list(recorder.idles(3), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "agent.custom_tool_use",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
        "session.status_idle",
        "user.tool_result",
        "user.custom_tool_result",
        "user.tool_confirmation",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    assert listed[8].stop_reason.event_ids == [lookup_call.id]
    assert listed[-1].stop_reason.type == "end_turn"
    last = script.requests()[-1]["messages"][-1]["content"]
    assert sorted(block["tool_use_id"] for block in last if block["type"] == "tool_result") == sorted(
        [bash_call.id, lookup_call.id]
    )
