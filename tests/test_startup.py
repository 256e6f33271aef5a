"""`agenthost serve` as a new user meets it: every failed start is one line naming the fix, and writes nothing.

Each case runs the real command in a process with a clean ``AGENTHOST_*`` environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from tests.conftest import AGENT, wait_status
from tests.processes import KEY, Agenthost, free_port


def _serve(data_dir: Path, *args: str, path: str | None = None, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    env |= {"AGENTHOST_DATA_DIR": str(data_dir), "AGENTHOST_SANDBOX_DIR": str(data_dir.parent / "sandboxes")}
    env |= {f"AGENTHOST_{name.upper()}": value for name, value in settings.items()}
    if path is not None:
        env["PATH"] = path
    command = [sys.executable, "-m", "agenthost", "serve", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agenthost: ")
    return lines[0]


@pytest.mark.parametrize(
    ("settings", "mentions"),
    [
        ({"sandbox": "bwarp"}, ["AGENTHOST_SANDBOX='bwarp'", "'bwrap', 'docker' or 'local'"]),
        ({"port": "80x"}, ["AGENTHOST_PORT='80x'", "integer"]),
        ({"lease_seconds": "-1"}, ["AGENTHOST_LEASE_SECONDS", "greater than 0"]),
    ],
    ids=["sandbox", "port", "lease"],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, settings: dict[str, str], mentions: list[str]
) -> None:
    line = _one_line(_serve(tmp_path / "data", **settings))
    for mention in mentions:
        assert mention in line
    assert not (tmp_path / "data").exists()


def test_a_busy_port_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line(_serve(tmp_path / "data", "--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
    assert not (tmp_path / "data").exists()  # no database made, migrated or started on


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    line = _one_line(_serve(tmp_path / "data", "--port", str(free_port())))
    assert "data directory" in line and "AGENTHOST_DATA_DIR" in line


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://agenthost:hunter2@127.0.0.1:{free_port()}/agenthost"
    line = _one_line(_serve(tmp_path / "data", "--port", str(free_port()), database_url=url))
    assert "cannot reach the database" in line and "AGENTHOST_DATABASE_URL" in line
    assert "hunter2" not in line


def test_without_bubblewrap_no_key_is_made_or_shown(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with everything serve needs but bwrap
    bin_dir.mkdir()
    result = _serve(tmp_path / "data", "--port", str(free_port()), path=str(bin_dir))
    line = _one_line(result)
    assert "bubblewrap is not installed" in line
    assert "sk-ah-" not in result.stderr + result.stdout
    assert not (tmp_path / "data" / "agenthost.db").exists()  # the first key is made on a start that worked


def test_without_model_credentials_the_start_warns_and_a_turn_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: list[Agenthost]
) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    served = Agenthost(
        ["serve"],
        tmp_path / "data",
        port=free_port(),
        sandbox="local",
        model_retries="1",
        retry_base_seconds="0.05",
        log_level="warning",
    )
    processes.append(served)
    assert "ANTHROPIC_API_KEY" in served.output() and "is not set" in served.output()

    with anthropic.Anthropic(
        base_url=str(served.url), api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        agent = client.beta.agents.create(**AGENT)
        environment = client.beta.environments.create(name="no-credentials")
        session = client.beta.sessions.create(agent=agent.id, environment_id=environment.id)
        client.beta.sessions.events.send(
            session.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "hello"}]}]
        )
        wait_status(client, session.id, "idle", timeout=60)
        events = list(client.beta.sessions.events.list(session.id))
    errors = [e for e in events if e.type == "session.error"]
    idles = [e for e in events if e.type == "session.status_idle"]
    assert [e.error.retry_status.type for e in errors] == ["retrying", "exhausted"]  # type: ignore[union-attr]
    for error in errors:
        assert "ANTHROPIC_API_KEY" in error.error.message  # type: ignore[union-attr]
    assert idles[-1].stop_reason.type == "retries_exhausted"  # type: ignore[union-attr]
