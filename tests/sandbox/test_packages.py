"""Environment packages: installed once per environment through its network policy, shared
read-only by its sessions, and a failed install is a session.error naming the package (issue #4 point 6).

The pip index is served by the fake model's HTTP server ("allowed.test" maps to it), so no
test reaches the internet; pip itself runs in the sandbox, through the egress proxy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import zipfile
from typing import Any

import anthropic
import httpx2
import pytest

from agenthost.testing.fake_anthropic import FakeAnthropic, Text, ToolUse
from tests.conftest import Script, assert_error, needs_bwrap, needs_root, wait_until
from tests.engine.conftest import ONE_TOOL_TURN, Recorder, assert_stream_equals_list, types
from tests.engine.test_turns import TOOLSET, say

pytestmark = [needs_bwrap, needs_root, pytest.mark.parametrize("server", ["sqlite"], indirect=True)]


def wheel(project: str, version: str, module: str, source: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel: its file name and bytes."""
    dist = f"{project.replace('-', '_')}-{version}"
    files = {
        f"{module}.py": source.encode(),
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: agenthost-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return f"{dist}-py3-none-any.whl", buffer.getvalue()


@pytest.fixture
def index(fake: FakeAnthropic) -> str:
    """Publish a one-off project on the fake pip index; return its name."""
    project = f"agenthost-demo-{secrets.token_hex(4)}"
    filename, data = wheel(project, "1.0", project.replace("-", "_"), "VALUE = 42\n")
    fake.pages[f"files/{filename}"] = ("application/octet-stream", data)
    fake.pages[f"simple/{project}/"] = ("text/html", f'<a href="/pages/files/{filename}">{filename}</a>')
    return project


def run(client: anthropic.Anthropic, script: Script, environment: Any) -> list[Any]:
    agent = script.agent(client, tools=[TOOLSET])
    session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    recorder = Recorder(client, session.id)
    try:
        client.beta.sessions.events.send(session.id, events=[say("go")])
        return assert_stream_equals_list(recorder.idles(timeout=120), client, session.id)
    finally:
        recorder.close()


def test_packages_install_once_and_every_session_sees_them(
    client: anthropic.Anthropic, script: Script, fake: FakeAnthropic, index: str
) -> None:
    module = index.replace("-", "_")
    environment = client.beta.environments.create(
        name=f"pkgs-{secrets.token_hex(4)}",
        config={
            "type": "cloud",
            "networking": {"type": "limited", "allow_package_managers": True},
            "packages": {"pip": [f"{index}==1.0"]},
        },
    )
    agent = script.agent(client, tools=[TOOLSET])
    client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
    # Provisioning starts at session creation, before any message.
    wait_until(lambda: f"files/{module}-1.0-py3-none-any.whl" in fake.page_hits, timeout=120)
    command = f"python3 -c 'import {module}; print({module}.VALUE)' && command -v python3 && touch /opt/agenthost/x"
    for _ in range(2):
        script(ToolUse("bash", {"command": command}), Text("checked"))
    downloads = fake.page_hits.count(f"files/{module}-1.0-py3-none-any.whl")
    for _ in range(2):
        listed = run(client, script, environment)
        assert types(listed) == ONE_TOOL_TURN
        result = listed[5]
        assert result.is_error is True  # the shared packages are read-only
        assert result.content[0].text.startswith("42\n/opt/agenthost/python/bin/python3\n")
        assert "Read-only file system" in result.content[0].text
    assert fake.page_hits.count(f"files/{module}-1.0-py3-none-any.whl") == downloads  # built once, then cached


def test_a_package_that_does_not_install_is_a_session_error(client: anthropic.Anthropic, script: Script) -> None:
    missing = f"agenthost-missing-{secrets.token_hex(4)}"
    environment = client.beta.environments.create(
        name=f"broken-{secrets.token_hex(4)}", config={"type": "cloud", "packages": {"pip": [f"{missing}==9.9"]}}
    )
    script(ToolUse("bash", {"command": "echo never"}))
    listed = run(client, script, environment)
    assert types(listed) == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.tool_use",
        "span.model_request_end",
        "agent.tool_result",
        "session.error",
        "session.usage",
        "session.status_idle",
    ]
    result, error, idle = listed[5], listed[6], listed[-1]
    assert result.is_error is True and f"installing pip packages {missing}==9.9 failed" in result.content[0].text
    assert error.error.type == "unknown_error" and error.error.retry_status.type == "exhausted"
    assert f"installing pip packages {missing}==9.9 failed" in error.error.message
    assert "No matching distribution" in error.error.message
    assert idle.stop_reason.type == "retries_exhausted"


@pytest.mark.parametrize("manager", ["apt", "cargo", "gem", "go"])
def test_managers_agenthost_cannot_install_are_refused(raw: httpx2.Client, manager: str) -> None:
    body = {"name": "x", "config": {"type": "cloud", "packages": {manager: ["something"]}}}
    assert_error(raw.post("/v1/environments", json=body), 400, "invalid_request_error", f"config.packages.{manager}")
