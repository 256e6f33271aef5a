"""The `agenthost` command as a user runs it: real processes, a real SQLite file, real HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest

from tests.conftest import wait_until
from tests.processes import free_port

KEY = re.compile(r"sk-ah-[A-Za-z0-9_-]{20,}")


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    env["AGENTHOST_DATA_DIR"] = str(data_dir)
    env["AGENTHOST_SANDBOX_DIR"] = str(data_dir / "sandboxes")  # no tools run here: never left behind
    return env


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agenthost", *args], env=_env(data_dir), capture_output=True, text=True, timeout=60
    )


class Served:
    def __init__(self, data_dir: Path, log: Path):
        self.port = free_port()
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agenthost", "serve", "--port", str(self.port)],
            env=_env(data_dir),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._healthy, timeout=60)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return httpx2.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._log_file.close()
        return self.log.read_text()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data", tmp_path / "serve.log")
    yield server
    if server.proc.poll() is None:
        server.stop()


def test_serve_creates_one_key_on_first_start_only(served: Served, tmp_path: Path) -> None:
    first_log = served.stop()
    keys = KEY.findall(first_log)
    assert len(keys) == 1, first_log
    again = Served(tmp_path / "data", tmp_path / "serve2.log")
    try:
        client = anthropic.Anthropic(
            base_url=again.url, api_key=keys[0], _strict_response_validation=True, max_retries=0
        )
        with client:
            agent = client.beta.agents.create(model="claude-opus-4-7", name="cli")
            assert client.beta.agents.retrieve(agent.id).name == "cli"
    finally:
        second_log = again.stop()
    assert KEY.findall(second_log) == []  # the key is printed once, never again
    assert (tmp_path / "data" / "agenthost.db").exists()


def test_a_fresh_data_dir_is_private_from_the_start(served: Served, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    client = anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0)
    with client:
        with pytest.raises(anthropic.AuthenticationError):  # any request: the database is open and written
            client.beta.agents.list()
    modes = {
        path.name: path.stat().st_mode & 0o777
        for path in [data_dir, *data_dir.iterdir()]
        if path.name in ("data", "agenthost.db", "agenthost.db-wal", "agenthost.db-shm", "secret.key", "files")
    }
    assert modes.pop("data") == 0o700
    assert modes.pop("agenthost.db") == 0o600
    assert modes.pop("secret.key") == 0o600
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes  # WAL, shared memory, files: the owner's only


def test_keys_create_list_revoke(served: Served, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data_dir = tmp_path / "data"
    created = _cli(data_dir, "keys", "create", "--workspace", "team-b")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY.fullmatch(key)
    client = anthropic.Anthropic(base_url=served.url, api_key=key, _strict_response_validation=True, max_retries=0)
    request.addfinalizer(client.close)
    assert list(client.beta.agents.list()) == []
    listed = _cli(data_dir, "keys", "list")
    assert listed.returncode == 0 and "team-b" in listed.stdout and key[-4:] in listed.stdout
    key_id = re.search(r"(apikey_\w+)[^\n]*team-b", listed.stdout)
    assert key_id is not None, listed.stdout
    revoked = _cli(data_dir, "keys", "revoke", key_id.group(1))
    assert revoked.returncode == 0, revoked.stderr

    # The server caches verified keys for auth_cache_seconds (2 s by default); wait for the revocation to bite.
    def refused() -> bool:
        try:
            client.beta.agents.list()
        except anthropic.AuthenticationError:
            return True
        return False

    wait_until(refused, timeout=15, interval=0.2)
    assert "revoked" in _cli(data_dir, "keys", "list").stdout
    unknown = _cli(data_dir, "keys", "revoke", "apikey_nope")
    assert unknown.returncode == 1 and "no active API key" in unknown.stderr


def test_keys_create_environment_makes_a_workers_key(
    served: Served, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    operator_key = _cli(data_dir, "keys", "create", "--workspace", "ops").stdout.strip()
    operator = anthropic.Anthropic(base_url=served.url, api_key=operator_key, _strict_response_validation=True)
    request.addfinalizer(operator.close)
    env = operator.beta.environments.create(name="racks", config={"type": "self_hosted"})
    created = _cli(data_dir, "keys", "create", "--environment", env.id)
    assert created.returncode == 0, created.stderr
    assert f"environment {env.id} of workspace 'ops'" in created.stderr
    worker = anthropic.Anthropic(
        base_url=served.url, api_key=created.stdout.strip(), _strict_response_validation=True, max_retries=0
    )
    request.addfinalizer(worker.close)
    assert worker.beta.environments.work.poll(env.id) is None
    with pytest.raises(anthropic.PermissionDeniedError):
        worker.beta.agents.list()
    assert env.id in _cli(data_dir, "keys", "list").stdout
    cloud = operator.beta.environments.create(name="cloud")
    for wrong in (cloud.id, "env_missing"):
        refused = _cli(data_dir, "keys", "create", "--environment", wrong)
        assert refused.returncode == 1 and "error:" in refused.stderr and refused.stdout == ""


def test_configured_api_key_means_no_generated_key(tmp_path: Path) -> None:
    env = _env(tmp_path / "data") | {"AGENTHOST_API_KEY": "sk-ah-configured-0123456789abcdef"}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agenthost", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            try:
                return httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(up, timeout=60)
        client = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{port}",
            api_key="sk-ah-configured-0123456789abcdef",
            _strict_response_validation=True,
            max_retries=0,
        )
        with client:
            assert list(client.beta.environments.list()) == []
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert KEY.findall(output) == []  # a configured key is never echoed, and none is generated


def test_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "agenthost", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("serve", "worker", "keys", "db"):
        assert command in result.stdout


def test_serve_refuses_to_start_without_bubblewrap_and_says_how_to_fix_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with everything serve needs but bwrap
    bin_dir.mkdir()
    env = _env(tmp_path / "data") | {"PATH": str(bin_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "agenthost", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "bubblewrap is not installed" in result.stderr and "apt-get install bubblewrap" in result.stderr
    assert "AGENTHOST_SANDBOX=local" in result.stderr  # the unsafe way out is named, never taken silently


@pytest.mark.parametrize("command", [["worker"], ["serve", "--no-engine"]])
def test_split_roles_refuse_sqlite_and_say_why(tmp_path: Path, command: list[str]) -> None:
    result = _cli(tmp_path / "data", *command)
    assert result.returncode != 0
    assert "needs PostgreSQL" in result.stderr and "AGENTHOST_DATABASE_URL" in result.stderr
    assert not (tmp_path / "data" / "agenthost.db").exists()  # refused before touching the store
