"""The ``bash`` tool: one persistent shell per session, with the API's input shape."""

from __future__ import annotations

from typing import Any

from agenthost.sandbox.base import Sandbox
from agenthost.tools.base import ToolInputError, ToolOutput, optional, spill, strip_ansi

DEFAULT_TIMEOUT_MS = 120_000
MAX_TIMEOUT_MS = 600_000

SCHEMA = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The shell command to run."},
        "restart": {"type": "boolean", "description": "Restart the shell session instead of running a command."},
        "timeout_ms": {"type": "integer", "description": "Timeout in milliseconds (default 120000)."},
    },
}
DESCRIPTION = (
    "Run a command in a persistent bash shell inside the session's sandbox. The working directory is /workspace; "
    "state such as the current directory and exported variables persists between calls."
)


async def run(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    if optional(tool_input, "restart", bool, False):
        await sandbox.restart()
        return ToolOutput.text("The shell was restarted.")
    command = tool_input.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ToolInputError("`command` is required unless `restart` is true")
    timeout_ms = optional(tool_input, "timeout_ms", int, DEFAULT_TIMEOUT_MS)
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise ToolInputError(f"`timeout_ms` must be between 1 and {MAX_TIMEOUT_MS}")
    result = await sandbox.run(command, timeout_ms / 1000)
    if result.timed_out:
        return ToolOutput.text(f"Command timed out after {timeout_ms} ms and was killed.", is_error=True)
    text = await spill(sandbox, strip_ansi(result.output).rstrip("\n"))
    if result.shell_exited:
        note = f"[exit code {result.exit_code}; the shell exited, a new one starts with the next command]"
        return ToolOutput.text(f"{text}\n{note}".lstrip("\n"), is_error=result.exit_code != 0)
    if result.exit_code != 0:
        return ToolOutput.text(f"{text}\n[exit code {result.exit_code}]".lstrip("\n"), is_error=True)
    return ToolOutput.text(text)
