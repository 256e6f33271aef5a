"""GitHub repository resources end to end: cloned before the first tool call, token kept out.

The server clones from a local stand-in for github.com (``tests/github.py``: ``git http-backend``
behind a threaded HTTP server that checks the token and records the Authorization headers it
saw), reached through the ``github_url`` setting. This module runs its own agenthost server,
on each database, with that setting.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.conftest import (
    BWRAP_PROBLEM,
    LiveServer,
    Script,
    live_server,
    wait_until,
)
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.observe import database_text, files_containing
from tests.engine.test_turns import TOOLSET, say
from tests.github import GitHub, GitHubServer, basic

pytestmark = pytest.mark.skipif(BWRAP_PROBLEM is not None, reason=f"clones are checked in a sandbox: {BWRAP_PROBLEM}")

URL = "https://github.com/acme/widgets"
TOOL = ["span.model_request_start", "agent.tool_use", "span.model_request_end"]
ANSWER = ["span.model_request_start", "agent.message", "span.model_request_end", "session.usage", "session.status_idle"]


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHub]:
    where = tmp_path_factory.mktemp("github")
    served = GitHubServer(where / "root", where / "work")
    yield served.start()
    served.stop()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake: FakeAnthropic, github: GitHub
) -> Iterator[LiveServer]:
    """An agenthost that clones from the local GitHub (this module's own; the shared one clones from github.com)."""
    with live_server(request.param, tmp_path_factory, github_url=github.url) as served:
        yield served


def _assert_nowhere(token: str, server: LiveServer, session_id: str, listed: list[Any], logged: list[str]) -> None:
    """The token (and the header made of it) is in no event, database row, server log line or sandbox file."""
    secrets = [token, basic(token).removeprefix("Basic ")]
    events = orjson.dumps([e.model_dump(mode="json") for e in listed]).decode()
    database = database_text(server)
    for secret in secrets:
        assert secret not in events
        assert secret not in database
        assert [line for line in logged if secret in line] == []
    assert server.sandbox_dir is not None
    session_dir = server.sandbox_dir / session_id
    assert (session_dir / "workspace").is_dir()
    assert files_containing(session_dir, *[s.encode() for s in secrets]) == []


def _session(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], *resources: Any
) -> tuple[Any, Recorder]:
    """A session of an agent with the toolset and these resources, and a recorder of its stream."""
    agent = script.agent(client, tools=[TOOLSET])
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id, resources=list(resources))
    recorder = Recorder(client, session.id)
    recorders.append(recorder)
    return session, recorder


def _results(listed: list[Any]) -> list[str]:
    return [e.content[0].text for e in listed if e.type == "agent.tool_result" and not e.is_error]


def test_repositories_are_cloned_at_their_branch_commit_or_default_and_the_token_stays_out(
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    recorders: list[Recorder],
    github: GitHub,
    server: LiveServer,
    logged: list[str],
) -> None:
    token = f"ghp_{os.urandom(12).hex()}"
    github.accept(token)
    before = len(github.headers())  # the server is the module's: other tests' requests come first
    look = (
        "cd /workspace && cat widgets/README.md feature-copy/feature.txt pinned/widgets/README.md "
        "&& cat widgets/.git/HEAD feature-copy/.git/HEAD pinned/widgets/.git/HEAD "
        "&& sed -n 's/.*url = //p' widgets/.git/config "
        "&& [ -O widgets/README.md ] && [ -O pinned/widgets/.git/config ] && echo owned "
        "&& echo mine > widgets/new.txt && ls -A"
    )
    script(
        ToolUse("bash", {"command": look}),
        ToolUse("read", {"file_path": "/workspace/widgets/README.md"}),
        Text("cloned"),
        ToolUse("bash", {"command": "cat /workspace/widgets/new.txt"}),
        Text("still there"),
    )
    repo = {"type": "github_repository", "url": URL, "authorization_token": token}
    session, recorder = _session(
        client,
        script,
        environment,
        recorders,
        repo,
        {**repo, "checkout": {"type": "branch", "name": "feature"}, "mount_path": "feature-copy"},
        {
            **repo,
            "checkout": {"type": "commit", "sha": github.widgets.first},
            "mount_path": "/workspace/pinned/widgets",
        },
    )
    client.beta.sessions.events.send(session.id, events=[say("look at the repositories")])
    recorder.idles(1)
    seen = len(github.headers())
    client.beta.sessions.events.send(session.id, events=[say("and again")])
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)

    turn = ["session.status_running", *TOOL, "agent.tool_result"]
    assert types(listed) == [
        "user.message",
        *turn,
        *TOOL,
        "agent.tool_result",
        *ANSWER,
        "user.message",
        *turn,
        *ANSWER,
    ]
    look_result, read_result, again = _results(listed)
    w = github.widgets
    assert look_result.splitlines() == [
        "widgets v2",  # the default branch (main)
        "a feature",  # branch feature
        "widgets v1",  # main's first commit, detached
        "ref: refs/heads/main",
        "ref: refs/heads/feature",
        w.first,
        URL,  # origin is the resource's URL, not the server the clone came from
        "owned",  # the sandbox's uid owns the tree
        "feature-copy",
        "pinned",
        "widgets",
    ]
    assert read_result == "     1\twidgets v2"
    assert again == "mine"  # cloned once: the next turn left the agent's changes alone
    assert len(github.headers()) == seen
    assert set(github.headers()[before:]) == {basic(token)}  # every request carried the token, and it was accepted
    assert any(f"cloned {URL} into /workspace/pinned/widgets" in line for line in logged)  # the log is seen
    _assert_nowhere(token, server, session.id, listed, logged)


def test_a_refused_token_is_a_session_error_and_the_rotated_token_clones_next_turn(
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    recorders: list[Recorder],
    github: GitHub,
    server: LiveServer,
    logged: list[str],
) -> None:
    wrong, right = f"ghp_wrong{os.urandom(8).hex()}", f"ghp_right{os.urandom(8).hex()}"
    github.accept(right)
    script(
        ToolUse("bash", {"command": "ls -A /workspace; echo listed"}),
        ToolUse("bash", {"command": "ls -A /workspace; echo again"}),
        Text("no repository"),
        ToolUse("bash", {"command": "cat /workspace/widgets/README.md"}),
        Text("there it is"),
    )
    session, recorder = _session(
        client, script, environment, recorders, {"type": "github_repository", "url": URL, "authorization_token": wrong}
    )
    (resource,) = session.resources
    client.beta.sessions.events.send(session.id, events=[say("look")])
    recorder.idles(1)
    client.beta.sessions.resources.update(resource.id, session_id=session.id, authorization_token=right)
    client.beta.sessions.events.send(session.id, events=[say("look again")])
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)

    assert types(listed) == [
        "user.message",
        "session.status_running",
        *TOOL,
        "session.error",  # once per turn, before the first tool call runs; the turn goes on
        "agent.tool_result",
        *TOOL,
        "agent.tool_result",
        *ANSWER,
        "user.message",
        "session.status_running",
        *TOOL,
        "agent.tool_result",
        *ANSWER,
    ]
    (error,) = [e for e in listed if e.type == "session.error"]
    assert error.error.type == "repository_authentication_error"
    assert error.error.repository_url == URL
    assert error.error.retry_status.type == "retrying"
    assert "authorization_token" in error.error.message and github.url not in error.error.message
    assert _results(listed) == ["listed", "again", "widgets v2"]
    assert basic(wrong) in github.headers() and basic(right) in github.headers()
    assert any(f"cloning {URL} for {session.id} failed" in line for line in logged)
    for token in (wrong, right):
        _assert_nowhere(token, server, session.id, listed, logged)


def test_each_failing_repository_is_its_own_session_error_and_the_others_are_cloned(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], github: GitHub
) -> None:
    token = f"ghp_{os.urandom(12).hex()}"
    github.accept(token)
    script(
        ToolUse("bash", {"command": "cat /workspace/widgets/README.md /workspace/pr/pull.txt; ls -A /workspace"}),
        Text("two of six"),
    )
    repo = {"type": "github_repository", "url": URL, "authorization_token": token}
    session, recorder = _session(
        client,
        script,
        environment,
        recorders,
        {"type": "github_repository", "url": "https://github.com/public/widgets"},  # public: no token needed
        {**repo, "checkout": {"type": "commit", "sha": github.widgets.pull}, "mount_path": "pr"},  # not on a branch
        {**repo, "checkout": {"type": "branch", "name": "nope"}, "mount_path": "nope"},
        {**repo, "checkout": {"type": "commit", "sha": "0" * 40}, "mount_path": "zero"},
        {**repo, "url": "https://github.com/acme/missing"},
        {**repo, "url": "https://github.com/forbidden/widgets", "mount_path": "forbidden"},
    )
    client.beta.sessions.events.send(session.id, events=[say("look")])
    listed = assert_stream_equals_list(recorder.idles(1), client, session.id)

    assert types(listed) == [
        "user.message",
        "session.status_running",
        *TOOL,
        *["session.error"] * 4,
        "agent.tool_result",
        *ANSWER,
    ]
    errors = [e.error for e in listed if e.type == "session.error"]
    assert [(e.type, e.repository_url) for e in errors] == [
        ("repository_checkout_error", URL),
        ("repository_checkout_error", URL),
        ("repository_not_found_error", "https://github.com/acme/missing"),
        ("repository_forbidden_error", "https://github.com/forbidden/widgets"),
    ]
    assert "'nope'" in errors[0].message and "0" * 40 in errors[1].message
    assert all(e.retry_status.type == "retrying" and github.url not in e.message for e in errors)
    assert _results(listed) == ["widgets v2\na pull request\npr\nwidgets"]


def _git_processes(marker: str) -> list[str]:
    """Host pids of processes whose command line mentions ``marker``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in proc.joinpath("cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found


def test_an_interrupt_stops_the_clone_and_the_next_turn_clones_again(
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    recorders: list[Recorder],
    github: GitHub,
    server: LiveServer,
) -> None:
    token = f"ghp_{os.urandom(12).hex()}"
    github.accept(token)
    github.held.clear()
    github.opened.clear()
    script(
        ToolUse("bash", {"command": "echo never"}),
        ToolUse("bash", {"command": "cat /workspace/widgets/README.md"}),
        Text("cloned at last"),
    )
    session, recorder = _session(
        client,
        script,
        environment,
        recorders,
        {"type": "github_repository", "url": "https://github.com/slow/widgets", "authorization_token": token},
    )
    try:
        client.beta.sessions.events.send(session.id, events=[say("look")])
        wait_until(github.held.is_set)  # git is waiting for the server's answer
        client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
        recorder.idles(1)
    finally:
        github.opened.set()
    assert server.sandbox_dir is not None
    assert not (server.sandbox_dir / session.id / "repositories.partial" / session.resources[0].id).exists()
    assert _git_processes(session.id) == []  # git and its remote helper were stopped
    client.beta.sessions.events.send(session.id, events=[say("look again")])
    listed = assert_stream_equals_list(recorder.idles(2), client, session.id)

    assert types(listed) == [
        "user.message",
        "session.status_running",
        *TOOL,
        "agent.tool_result",
        "user.interrupt",  # processed when the stopped call has its result
        "session.usage",
        "session.status_idle",
        "user.message",
        "session.status_running",
        *TOOL,
        "agent.tool_result",
        *ANSWER,
    ]
    interrupted, cloned = (e for e in listed if e.type == "agent.tool_result")
    assert interrupted.is_error and interrupted.content[0].text == "Interrupted by the user."
    assert not cloned.is_error and cloned.content[0].text == "widgets v2"
