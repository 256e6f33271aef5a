"""Built-in tool details the model sees: bash state, errors, timeouts, restarts, long outputs, disabled tools."""

from __future__ import annotations

import secrets
from typing import Any

import anthropic
import orjson

from agenthost.testing.fake_anthropic import Text, ToolUse
from agenthost.tools.registry import Toolbox
from tests.conftest import Script, sleepers, wait_until
from tests.engine.conftest import Recorder, assert_stream_equals_list
from tests.engine.test_turns import TOOLSET, say, start


def _results(listed: list[Any]) -> list[tuple[bool, str]]:
    return [(bool(e.is_error), e.content[0].text) for e in listed if e.type == "agent.tool_result"]


def test_bash_keeps_state_reports_failures_times_out_and_restarts(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(
        ToolUse("bash", {"command": "cd /tmp && export GREETING=hi"}),
        ToolUse("bash", {"command": "echo $GREETING from $(pwd)"}),
        ToolUse("bash", {"command": "echo oops >&2; false"}),
        ToolUse("bash", {"command": "exit 3"}),
        ToolUse("bash", {"command": "sleep 5", "timeout_ms": 300}),
        ToolUse("bash", {"command": "echo ${GREETING:-gone}"}),
        ToolUse("bash", {"command": "export GREETING=again"}),
        ToolUse("bash", {"restart": True}),
        ToolUse("bash", {"command": "echo ${GREETING:-fresh} in $(pwd)"}),
        ToolUse("bash", {}),
        Text("done"),
    )
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("shell games")])
    results = _results(assert_stream_equals_list(recorder.idles(), client, session.id))
    assert results[0] == (False, "")
    assert results[1] == (False, "hi from /tmp")
    assert results[2] == (True, "oops\n[exit code 1]")
    assert results[3] == (True, "[exit code 3; the shell exited, a new one starts with the next command]")
    assert results[4] == (True, "Command timed out after 300 ms and was killed.")
    assert results[5] == (False, "gone")  # the killed shell's state went with it
    assert results[7] == (False, "The shell was restarted.")
    assert results[8] == (False, "fresh in /workspace")
    assert results[9][0] is True and "`command` is required" in results[9][1]


def test_long_output_goes_to_a_file_with_a_preview(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("bash", {"command": "seq 1 40000"}), Text("long"))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("count")])
    ((is_error, text),) = _results(assert_stream_equals_list(recorder.idles(), client, session.id))
    assert not is_error and len(text) < 3_000
    header, first_line = text.split("\n")[:2]
    total = sum(len(str(i)) + 1 for i in range(1, 40001)) - 1  # the trailing newline is dropped
    assert header.startswith(f"[output of {total} characters saved to /workspace/.agenthost/outputs/")
    assert first_line == "1"


def test_disabled_and_unknown_tools_are_refused(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    toolset = {
        "type": "agent_toolset_20260401",
        "default_config": {"enabled": False},
        "configs": [{"name": "read", "enabled": True}],
    }
    script(ToolUse("bash", {"command": "echo nope"}), Text("ok"))
    session, recorder = start(client, script, environment, recorders, tools=[toolset])
    client.beta.sessions.events.send(session.id, events=[say("try bash")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    tool_use = next(e for e in listed if e.type == "agent.tool_use")
    assert tool_use.type == "agent.tool_use"
    assert tool_use.evaluated_permission == "deny" and tool_use.evaluation is None
    assert _results(listed) == [(True, "Tool bash is not enabled for this agent.")]
    assert [t["name"] for t in script.requests()[0]["tools"]] == ["read"]


def test_requests_carry_cache_breakpoints_and_the_agent_config(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(ToolUse("read", {"file_path": "missing.txt"}), Text("ok"))
    session, recorder = start(
        client,
        script,
        environment,
        recorders,
        tools=[TOOLSET],
        model={"id": "claude-sonnet-4-6", "effort": "low", "speed": "fast"},
    )
    client.beta.sessions.events.send(session.id, events=[say("read it")])
    recorder.idles()
    first, second = script.requests()
    assert first["model"] == "claude-sonnet-4-6" and first["speed"] == "fast"
    assert first["output_config"] == {"effort": "low"}
    names = ["bash", "read", "write", "edit", "glob", "grep", "web_fetch", "web_search"]
    assert [t["name"] for t in first["tools"]] == names
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert second["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert second["messages"][-1]["content"][-1]["type"] == "tool_result"


def test_web_search_asks_the_operators_search_service_and_filters_results_by_domain(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], fake: Any
) -> None:
    fake.pages["search"] = (
        "application/json",
        orjson.dumps(
            {
                "results": [
                    {"title": "Run it", "url": "https://docs.example.com/run", "content": " How to run it. "},
                    {"title": "Spam", "url": "https://spam.example.net/x", "content": "buy"},
                    {"title": "API", "url": "https://api.docs.example.com/b", "content": "The API."},
                    {"title": "no url"},
                ]
            }
        ),
    )
    searching = {
        "type": "agent_toolset_20260401",
        "configs": [{"name": "web_search", "blocked_domains": ["spam.example.net"]}],
    }
    script(ToolUse("web_search", {"query": "run agenthost"}), ToolUse("web_search", {"query": " "}), Text("found"))
    session, recorder = start(client, script, environment, recorders, tools=[searching])
    client.beta.sessions.events.send(session.id, events=[say("search")])
    first_turn = recorder.idles()
    results = _results(assert_stream_equals_list(first_turn, client, session.id))
    assert results == [
        (
            False,
            "Results for 'run agenthost':\n\n1. Run it\n   https://docs.example.com/run\n   How to run it.\n\n"
            "2. API\n   https://api.docs.example.com/b\n   The API.",
        ),
        (True, "`query` is required"),
    ]
    assert ("search", {"q": "run agenthost", "format": "json"}) in fake.page_queries
    assert "web_search" in [tool["name"] for tool in script.requests()[0]["tools"]]

    del fake.pages["search"]  # the service is down: an error result, and the turn goes on
    script(ToolUse("web_search", {"query": "again"}), Text("gave up"))
    client.beta.sessions.events.send(session.id, events=[say("search again")])
    results = _results(assert_stream_equals_list(recorder.idles(2), client, session.id))
    assert results[-1][0] is True and results[-1][1].startswith("The search service failed: HTTPStatusError")


def test_web_search_is_not_offered_without_a_search_service() -> None:
    allow = {"enabled": True, "permission_policy": {"type": "always_allow"}}
    toolset = {"type": "agent_toolset_20260401", "default_config": allow, "configs": []}
    assert "web_search" not in [tool["name"] for tool in Toolbox({"tools": [toolset]}).definitions]
    offered = Toolbox({"tools": [toolset]}, search_url="http://search.internal/search").definitions
    assert "web_search" in [tool["name"] for tool in offered]


def test_web_fetch_reads_pages_and_honours_domain_lists(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], fake: Any
) -> None:
    fake.pages["doc"] = (
        "text/html",
        "<html><head><style>p{}</style></head><body><h1>Title</h1>"
        "<p>Some &amp; text</p><script>x()</script></body></html>",
    )
    port = fake.url.rsplit(":", 1)[1]
    script(
        ToolUse("web_fetch", {"url": f"{fake.url}/pages/moved"}),
        ToolUse("web_fetch", {"url": f"http://localhost:{port}/pages/doc"}),
        ToolUse("web_fetch", {"url": "file:///etc/passwd"}),
        ToolUse("web_fetch", {"url": f"{fake.url}/pages/absent"}),
        Text("read"),
    )
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("fetch")])
    results = _results(assert_stream_equals_list(recorder.idles(), client, session.id))
    assert results[0] == (False, f"Fetched {fake.url}/pages/doc (HTTP 200, text/html)\n\nTitle Some & text")
    assert results[1][0] is True and results[1][1].startswith("url_not_allowed: localhost resolves to the non-public")
    assert results[2][0] is True and results[2][1].startswith("url_not_allowed:")
    assert results[3][0] is True and "HTTP 404" in results[3][1]


def test_web_fetch_domain_lists(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], fake: Any
) -> None:
    toolset = {
        "type": "agent_toolset_20260401",
        "configs": [{"name": "web_fetch", "allowed_domains": ["docs.example.com"]}],
    }
    script(
        ToolUse("web_fetch", {"url": f"{fake.url}/pages/doc"}),
        ToolUse("web_fetch", {"url": "https://evil.example.com/x"}),
        Text("blocked"),
    )
    session, recorder = start(client, script, environment, recorders, tools=[toolset])
    client.beta.sessions.events.send(session.id, events=[say("fetch")])
    results = _results(assert_stream_equals_list(recorder.idles(), client, session.id))
    assert results == [
        (True, "url_not_allowed: 127.0.0.1 is not in this agent's allowed_domains"),
        (True, "url_not_allowed: evil.example.com is not in this agent's allowed_domains"),
    ]


def test_an_idle_session_keeps_no_processes_but_keeps_its_files(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    marker = f"{1000 + secrets.randbelow(10**6)}.5"  # a sleep no other test starts
    script(
        ToolUse("bash", {"command": f"echo kept > file.txt; sleep {marker} & echo started"}),
        Text("started"),
        ToolUse("bash", {"command": "cat file.txt"}),
        Text("read"),
    )
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("start")])
    assert _results(recorder.idles()) == [(False, "started")]
    assert sleepers(marker)  # the sandbox runs while the session is active...
    wait_until(lambda: not sleepers(marker), timeout=15)  # ...and stops after sandbox_idle_seconds (1 s in tests)
    client.beta.sessions.events.send(session.id, events=[say("again")])
    results = _results(recorder.idles(2))
    assert results[-1] == (False, "kept")
