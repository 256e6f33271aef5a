"""Documentation stays true: settings, CLI commands and the README's commands."""

from __future__ import annotations

import re
from pathlib import Path

from agenthost.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "settings.md").read_text()
    for name in Settings.model_fields:
        assert f"`AGENTHOST_{name.upper()}`" in docs, name


def test_every_setting_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name


def test_every_cli_command_is_documented() -> None:
    from agenthost.cli import app

    docs = (ROOT / "docs" / "cli.md").read_text()
    groups = {group.name: group.typer_instance for group in app.registered_groups}
    for command in app.registered_commands:
        assert f"agenthost {command.callback.__name__}" in docs  # type: ignore[union-attr]
    for name, group in groups.items():
        for command in group.registered_commands:  # type: ignore[union-attr]
            assert f"agenthost {name} {command.name}" in docs


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2
    test_command = blocks[1].strip()
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()
