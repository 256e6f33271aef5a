"""The Docker backend through real sessions (issue #4 point 8).

A Docker engine of the test's own is started (``dockerd`` with its data, socket and no
networking of its own in a temp dir)
and a second agenthost server uses it; the same attempts as the bubblewrap escape suite
must fail the same way. Skipped with the reason when no engine can be started; CI
installs one and sets AGENTHOST_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest

from agenthost.testing.fake_anthropic import FakeAnthropic
from tests.conftest import LiveServer, Script, sandbox_dir, sdk, serve_in_thread, test_settings, wait_until
from tests.engine.conftest import Recorder
from tests.sandbox.test_escapes import FETCH, bash, interrupt_kills_processes_that_left_the_shell, run_tools

REQUIRE_DOCKER = os.environ.get("AGENTHOST_REQUIRE_DOCKER") == "1"


def _engine_problem() -> str | None:
    if os.geteuid() != 0:
        return "starting a Docker engine needs root"
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        return "dockerd and docker are not installed (apt-get install docker.io)"
    return None


@pytest.fixture(scope="module")
def docker_host() -> Iterator[str]:
    problem = _engine_problem()
    if problem is not None:
        if REQUIRE_DOCKER:
            pytest.fail(f"AGENTHOST_REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(problem)
    home = Path(tempfile.mkdtemp(prefix="agenthost-dockerd-"))
    socket_path = home / "docker.sock"
    log = (home / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--data-root",
            str(home / "data"),
            "--exec-root",
            str(home / "exec"),
            "--pidfile",
            str(home / "dockerd.pid"),
            "--host",
            f"unix://{socket_path}",
        ],  # fmt: skip
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    host = f"unix://{socket_path}"

    def answers() -> bool:
        if daemon.poll() is not None:
            return True
        probe = subprocess.run(["docker", "--host", host, "version"], capture_output=True, check=False)
        return probe.returncode == 0

    try:
        wait_until(answers, timeout=60, interval=0.2)
        if daemon.poll() is not None:
            problem = f"dockerd exited: {(home / 'dockerd.log').read_text()[-500:]}"
            if REQUIRE_DOCKER:
                pytest.fail(problem)
            pytest.skip(problem)
        yield host
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        subprocess.run(["umount", "-R", str(home / "data")], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def docker_server(docker_host: str, fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data_dir = tmp_path_factory.mktemp("agenthost-docker")
    db_url = f"sqlite:///{data_dir / 'agenthost.db'}"
    settings = test_settings(data_dir, db_url).model_copy(
        update={"sandbox": "docker", "sandbox_docker_host": docker_host, "sandbox_dir": sandbox_dir()}
    )
    base_url, uv, thread = serve_in_thread(settings)
    try:
        yield LiveServer(base_url, db_url, "sqlite", settings.resolved_sandbox_dir())
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        shutil.rmtree(settings.resolved_sandbox_dir(), ignore_errors=True)


@pytest.fixture
def docker_client(docker_server: LiveServer) -> Iterator[anthropic.Anthropic]:
    with sdk(docker_server, docker_server.new_key()) as client:
        yield client


def test_a_docker_sandbox_contains_the_agent(
    docker_client: anthropic.Anthropic,
    docker_server: LiveServer,
    script: Script,
    recorders: list[Recorder],
    fake: FakeAnthropic,
) -> None:
    fake_port = urlsplit(fake.url).port
    server_port = urlsplit(docker_server.base_url).port
    fake.pages["docker-note"] = ("text/plain", "hello from docker")
    limited = docker_client.beta.environments.create(
        name=f"limited-{secrets.token_hex(4)}",
        config={"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["allowed.test"]}},
    )
    session, results = run_tools(
        docker_client,
        script,
        limited,
        recorders,
        [
            bash("id -u; pwd; cat /etc/shadow"),
            bash("echo x > /etc/agenthost-escape"),
            bash("echo kept > /mnt/session/outputs/out.txt && echo written"),
            ("write", {"file_path": "fetch.py", "content": FETCH}),
            bash(f"python3 fetch.py http://allowed.test:{fake_port}/pages/docker-note"),
            bash(f"python3 fetch.py http://other.test:{fake_port}/pages/docker-note"),
            bash(f"python3 fetch.py tcp:127.0.0.1:{server_port}"),
            bash("python3 -c 'b = bytearray(1 << 30); print(\"allocated\")'"),
            bash("ls /var/run/docker.sock /run/docker.sock 2>&1 | head -1"),
        ],
    )
    uid, cwd, shadow = results[0][1].split("\n")[:3]
    assert results[0][0] and int(uid) >= 1_000_000_000 and cwd == "/workspace"
    assert shadow == "cat: /etc/shadow: Permission denied"
    assert results[1][0] and "Read-only file system" in results[1][1]
    assert results[2] == (False, "written")
    assert docker_server.sandbox_dir is not None
    assert (docker_server.sandbox_dir / session.id / "outputs" / "out.txt").read_text() == "kept\n"
    assert results[4] == (False, "200 hello from docker")
    assert results[5] == (False, "403 Blocked by the sandbox network policy: other.test is not an allowed host.")
    assert results[6] == (False, "failed ConnectionRefusedError")
    assert results[7][0] and results[7][1].endswith("[exit code 137]")  # SIGKILLed by the OOM killer
    assert "allocated" not in results[7][1].splitlines()
    assert "No such file or directory" in results[8][1]  # the engine's socket is never inside


def test_interrupt_removes_every_process_of_the_container(
    docker_client: anthropic.Anthropic, script: Script, recorders: list[Recorder]
) -> None:
    environment = docker_client.beta.environments.create(name=f"env-{secrets.token_hex(4)}")
    interrupt_kills_processes_that_left_the_shell(docker_client, script, environment, recorders, ["setsid"])
