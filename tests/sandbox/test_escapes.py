"""The escape suite (issue #4): an agent tries to leave its sandbox through every door.

The tool calls come from the scripted fake model and run in real bubblewrap sandboxes of
a real server; each attempt must fail the documented way while the server keeps
serving. Sandboxes are the same on both stores, so these run on SQLite only.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest

from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.conftest import LiveServer, Script, needs_bwrap, needs_root, sleepers, wait_until
from tests.engine.conftest import Recorder, assert_stream_equals_list, types
from tests.engine.test_actions import PAUSE
from tests.engine.test_turns import TOOLSET, say, start

pytestmark = [needs_bwrap, needs_root, pytest.mark.parametrize("server", ["sqlite"], indirect=True)]

# Prints what a URL answered through the sandbox's proxy settings, or why it failed.
FETCH = r"""
import os, socket, sys, urllib.error, urllib.parse, urllib.request
target = sys.argv[1]
try:
    if target.startswith("proxy:"):  # straight to the proxy, whatever NO_PROXY says
        proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
        with socket.create_connection((proxy.hostname, proxy.port), timeout=10) as conn:
            conn.sendall(f"GET {target[6:]} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = b"".join(iter(lambda: conn.recv(65536), b"")).decode()
        head, _, body = answer.partition("\r\n\r\n")
        print(head.split(" ")[1], body.strip())
    elif target.startswith("tcp:"):
        host, port = target[4:].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()
        print("connected")
    else:
        response = urllib.request.urlopen(target, timeout=10)
        print(response.status, response.read().decode().strip())
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read().decode().strip())
except urllib.error.URLError as exc:
    print("failed URLError", exc.reason)
except Exception as exc:
    print("failed", type(exc).__name__)
"""


def run_tools(
    client: anthropic.Anthropic,
    script: Script,
    environment: Any,
    recorders: list[Recorder],
    calls: list[tuple[str, dict[str, Any]]],
) -> tuple[Any, list[tuple[bool, str]]]:
    """One turn calling each tool in turn (one model call each); the exact sequence is checked."""
    script(*(ToolUse(name, tool_input) for name, tool_input in calls), Text("done"))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("try")])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    per_call = ["span.model_request_start", "agent.tool_use", "span.model_request_end", "agent.tool_result"]
    assert types(listed) == [
        "user.message",
        "session.status_running",
        *per_call * len(calls),
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    results = [(e.is_error, e.content[0].text if e.content else "") for e in listed if e.type == "agent.tool_result"]
    return session, results


def bash(command: str, timeout_ms: int | None = None) -> tuple[str, dict[str, Any]]:
    return ("bash", {"command": command} | ({"timeout_ms": timeout_ms} if timeout_ms else {}))


def test_the_host_filesystem_is_out_of_reach(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], server: LiveServer
) -> None:
    assert server.sandbox_dir is not None
    other, _ = run_tools(client, script, environment, recorders, [bash("echo secret-of-b > secret.txt")])
    other_secret = server.sandbox_dir / other.id / "workspace" / "secret.txt"
    assert other_secret.read_text() == "secret-of-b\n"
    session, results = run_tools(
        client,
        script,
        environment,
        recorders,
        [
            bash("cat /etc/shadow"),
            bash(f"cat {other_secret}"),
            bash("echo x > /etc/agenthost-escape"),
            bash("echo x > /usr/agenthost-escape"),
            bash("touch /mnt/session/uploads/x"),
            bash("ls /root /home /var 2>&1 | head -3; id -u"),
            bash("echo kept > /mnt/session/outputs/report.txt && echo written"),
        ],
    )
    assert results[0] == (True, "cat: /etc/shadow: Permission denied\n[exit code 1]")
    assert results[1] == (True, f"cat: {other_secret}: No such file or directory\n[exit code 1]")
    assert results[2][0] and "/etc/agenthost-escape: Read-only file system" in results[2][1]
    assert results[3][0] and "/usr/agenthost-escape: Read-only file system" in results[3][1]
    assert results[4][0] and "Read-only file system" in results[4][1]
    listing, uid = results[5][1].rsplit("\n", 1)
    assert "No such file or directory" in listing and int(uid) >= 1_000_000_000  # never root, never a host user
    assert results[6] == (False, "written")
    assert not Path("/etc/agenthost-escape").exists() and not Path("/usr/agenthost-escape").exists()
    outputs = server.sandbox_dir / session.id / "outputs" / "report.txt"
    assert outputs.read_text() == "kept\n"  # deliverables are on the host, to be collected
    assert outputs.stat().st_uid == int(uid)


def test_file_tools_resolve_symlinks_and_dotdot_inside_the_sandbox(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], server: LiveServer
) -> None:
    assert server.sandbox_dir is not None
    other, _ = run_tools(client, script, environment, recorders, [bash("echo secret-of-b > secret.txt")])
    other_secret = server.sandbox_dir / other.id / "workspace" / "secret.txt"
    session, results = run_tools(
        client,
        script,
        environment,
        recorders,
        [
            bash(f"ln -s /etc/shadow shadow && ln -s / root && ln -s {other_secret} theirs && ln -s .. up && echo ok"),
            ("read", {"file_path": "shadow"}),
            ("read", {"file_path": "/workspace/root/etc/passwd"}),
            ("read", {"file_path": "theirs"}),
            ("read", {"file_path": "/workspace/../../etc/passwd"}),
            ("read", {"file_path": "up/up/etc/hostname"}),
            ("write", {"file_path": "root/etc/agenthost-escape", "content": "x"}),
            ("edit", {"file_path": "shadow", "old_string": "root", "new_string": "toor"}),
            ("glob", {"pattern": "**/*"}),
            ("grep", {"pattern": "root:|secret-of-b"}),
            ("read", {"file_path": "/etc/hostname"}),
        ],
    )
    assert results[0] == (False, "ok")
    for index in (1, 2, 3, 7):
        assert results[index][0] and "no such file" in results[index][1].lower(), results[index]
    assert results[4][0] and "the file tools reach only" in results[4][1]  # "/etc/passwd" after normalising
    assert results[5][0] and "no such file" in results[5][1].lower()
    # A write through a symlink to "/" lands inside the workspace, never on the host.
    assert results[6] == (False, "Wrote 1 characters to /workspace/root/etc/agenthost-escape.")
    assert not Path("/etc/agenthost-escape").exists()
    assert (server.sandbox_dir / session.id / "workspace" / "etc" / "agenthost-escape").read_text() == "x"
    assert results[8] == (False, "/workspace/etc/agenthost-escape")  # symlinks are not followed
    assert results[9] == (False, "No matches found.")
    assert results[10][0] and "the file tools reach only" in results[10][1]


def test_the_network_goes_only_where_the_policy_says(
    client: anthropic.Anthropic, script: Script, recorders: list[Recorder], server: LiveServer, fake: FakeAnthropic
) -> None:
    fake_port = urlsplit(fake.url).port
    server_port = urlsplit(server.base_url).port
    fake.pages["note"] = ("text/plain", "hello through the proxy")
    write = ("write", {"file_path": "fetch.py", "content": FETCH})

    def fetch(target: str) -> tuple[str, dict[str, Any]]:
        return bash(f"python3 fetch.py {target}")

    limited = client.beta.environments.create(
        name=f"limited-{secrets.token_hex(4)}",
        config={"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["allowed.test"]}},
    )
    _, results = run_tools(
        client,
        script,
        limited,
        recorders,
        [
            write,
            fetch(f"http://allowed.test:{fake_port}/pages/note"),
            fetch(f"http://other.test:{fake_port}/pages/note"),
            fetch(f"https://other.test:{fake_port}/"),
            fetch(f"tcp:127.0.0.1:{server_port}"),
        ],
    )
    assert results[1] == (False, "200 hello through the proxy")
    assert results[2] == (False, "403 Blocked by the sandbox network policy: other.test is not an allowed host.")
    assert results[3] == (False, "failed URLError Tunnel connection failed: 403 Forbidden")
    assert results[4] == (False, "failed ConnectionRefusedError")  # loopback is the sandbox's own: nothing there

    unrestricted = client.beta.environments.create(name=f"open-{secrets.token_hex(4)}")
    _, results = run_tools(
        client,
        script,
        unrestricted,
        recorders,
        [
            write,
            fetch(f"http://other.test:{fake_port}/pages/note"),
            fetch(f"http://127.0.0.1:{server_port}/health"),
            fetch(f"proxy:http://127.0.0.1:{server_port}/health"),
            fetch(f"proxy:http://localhost:{server_port}/health"),
            fetch("http://169.254.169.254/latest/meta-data/"),
            fetch("http://10.11.12.13/"),
        ],
    )
    assert results[1] == (False, "200 hello through the proxy")
    refused = "403 Blocked by the sandbox network policy: {} resolves to the non-public address {}."
    # NO_PROXY: straight to the sandbox's own loopback, where nothing listens.
    assert results[2] == (False, "failed URLError [Errno 111] Connection refused")
    assert results[3] == (False, refused.format("127.0.0.1", "127.0.0.1"))
    assert results[4][1].startswith("403 Blocked by the sandbox network policy: localhost resolves to the non-public")
    assert results[5] == (False, refused.format("169.254.169.254", "169.254.169.254"))
    assert results[6] == (False, refused.format("10.11.12.13", "10.11.12.13"))


def test_limits_end_the_command_not_the_server(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(
        ToolUse("bash", {"command": "python3 -c 'b = bytearray(1 << 30); print(\"allocated\")'"}),
        ToolUse("bash", {"command": ":(){ :|:& };: ; sleep 30", "timeout_ms": 8000}),
        ToolUse("bash", {"command": "echo alive"}),
        Text("done"),
    )
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("try")])
    recorder.wait(lambda events: types(events).count("agent.tool_use") == 2)

    def bomb_stopped() -> bool:  # the sandbox's pids cgroup refused forks while the bomb ran
        groups = [*Path("/sys/fs/cgroup/pids/agenthost").glob(f"*.{session.id}.*")]
        groups += Path("/sys/fs/cgroup/agenthost").glob(f"*.{session.id}.*")  # cgroup v2
        for events in (group / "pids.events" for group in groups):
            with contextlib.suppress(OSError):
                return int(events.read_text().split()[1]) > 0
        return False

    wait_until(bomb_stopped, timeout=8)
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    per_call = ["span.model_request_start", "agent.tool_use", "span.model_request_end", "agent.tool_result"]
    assert types(listed) == [
        "user.message",
        "session.status_running",
        *per_call * 3,
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ]
    results = [(e.is_error, e.content[0].text) for e in listed if e.type == "agent.tool_result"]
    assert results[0][0] and "Killed" in results[0][1] and results[0][1].endswith("\n[exit code 137]")
    assert "allocated" not in results[0][1].splitlines()  # (the bash message quotes the command)
    assert results[1] == (True, "Command timed out after 8000 ms and was killed.")
    assert results[2] == (False, "alive")  # a fresh sandbox, same files
    assert client.beta.sessions.retrieve(session.id).status == "idle"


def test_a_pattern_that_backtracks_forever_is_stopped_and_the_server_keeps_serving(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    script(
        ToolUse("write", {"file_path": "x.txt", "content": "x" * 40 + "\n"}),
        ToolUse("grep", {"pattern": "(x+x+)+y"}),
        Text("done"),
    )
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("search")])
    recorder.wait(lambda events: types(events).count("agent.tool_use") == 2)
    # While the search backtracks in its own process, the server answers as usual.
    assert client.beta.sessions.retrieve(session.id).status == "running"
    assert client.beta.environments.retrieve(environment.id).id == environment.id
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    results = [(e.is_error, e.content[0].text) for e in listed if e.type == "agent.tool_result"]
    assert results[1] == (True, "grep was stopped after 3 s: simplify the pattern or narrow `path`")


def test_a_deep_tree_is_searched_to_a_depth_and_deleted_whole(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], server: LiveServer
) -> None:
    assert server.sandbox_dir is not None
    # One mkdir for the whole path (2,200 characters): a mkdir per level took most of the test's time.
    deep = "path=$(printf 'd/%.0s' $(seq 1100)); mkdir -p $path && echo deep > ${path}f.txt; echo top > g.txt"
    session, results = run_tools(
        client,
        script,
        environment,
        recorders,
        [
            bash(deep),
            ("glob", {"pattern": "**/*.txt"}),
            ("grep", {"pattern": "deep|top"}),
            ("glob", {"pattern": "[z-a]"}),
        ],
    )
    assert results[0] == (False, "")
    assert results[1] == (False, "/workspace/g.txt")  # f.txt is 1100 levels down, past MAX_DEPTH
    assert results[2] == (False, "/workspace/g.txt:1:top")
    assert results[3][0] and "not a valid glob" in results[3][1]
    client.beta.sessions.delete(session.id)
    wait_until(lambda: not (server.sandbox_dir / session.id).exists())


def interrupt_kills_processes_that_left_the_shell(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder], detached: list[str]
) -> None:
    """Interrupt a bash call that started ``sleep``s through each of ``detached`` (setsid, nohup):
    the exact interrupt sequence, and none of them outlives the sandbox."""
    marker = f"{2000 + secrets.randbelow(10**6)}.5"
    command = " & ".join(f"{how} sleep {marker}" for how in detached) + " & sleep 60"
    script(ToolUse("bash", {"command": command}))
    session, recorder = start(client, script, environment, recorders, tools=[TOOLSET])
    client.beta.sessions.events.send(session.id, events=[say("start")])
    recorder.wait(lambda events: "agent.tool_use" in types(events))
    wait_until(lambda: len(sleepers(marker)) == len(detached))
    client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])
    listed = assert_stream_equals_list(recorder.idles(), client, session.id)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "user.interrupt",
        *PAUSE,
    ]
    result = listed[5]
    assert result.is_error and result.content[0].text == "Interrupted by the user."
    wait_until(lambda: not sleepers(marker))  # the detached children went with the sandbox


def test_interrupt_kills_processes_that_left_the_shell(
    client: anthropic.Anthropic, script: Script, environment: Any, recorders: list[Recorder]
) -> None:
    interrupt_kills_processes_that_left_the_shell(client, script, environment, recorders, ["setsid", "nohup"])
