"""Schemathesis against the served OpenAPI document: every check, every operation, both databases.

The fuzzer runs as its own process against the live server, with a fixed seed so that a
failure reproduces. Its configuration (``schemathesis.toml`` beside this file) says which
operations may refuse a schema-valid request, and why; ``fuzz_hooks.py`` drops made-up page
cursors. Sessions are created for an agent and an environment made here, so that the
operations under a session reach a real one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer, sdk

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@pytest.mark.timeout(1500)
def test_the_schema_fuzzer_finds_no_failure(server: LiveServer, tmp_path: Path) -> None:
    key = server.new_key()
    with sdk(server, key) as client:
        agent = client.beta.agents.create(name="fuzzed", model="claude-sonnet-4-5")
        environment = client.beta.environments.create(name="fuzzed")
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        (HERE / "schemathesis.toml").read_text().replace("tests/api/fuzz_hooks.py", str(HERE / "fuzz_hooks.py"))
        + "\n# Sessions are made for an agent and an environment that exist.\n"
        + '[[operations]]\ninclude-method = "POST"\ninclude-path = "/v1/sessions"\n'
        + f'parameters = {{ "body.agent" = "{agent.id}", "body.environment_id" = "{environment.id}" }}\n'
    )
    report = tmp_path / "report.json"
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a test dependency: pip install -e '.[test]'"
    run = subprocess.run(
        [
            st,
            "--config-file",
            str(config),
            "run",
            f"{server.base_url}/openapi.json",
            "--header",
            f"x-api-key: {key}",
            "--checks",
            "all",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert run.returncode == 0, f"{run.stdout[-30000:]}\n{run.stderr[-4000:]}"
    figures = json.loads(report.read_text())
    assert figures["complete"] and figures["failures"] == [] and figures["errors"] == []
    assert figures["operations"]["tested"] == figures["operations"]["total"] > 70
    assert all(phase["status"] == "success" for name, phase in figures["phases"].items() if name != "examples")
    cases = figures["test_cases"]
    unreached = len(figures["warnings"]["missing_test_data"])
    print(
        f"schemathesis on {server.backend}: {figures['operations']['tested']} operations, {cases['generated']} cases, "
        f"0 failures, {unreached} operations only ever answered 404, {figures['running_time']:.0f} s"
    )
