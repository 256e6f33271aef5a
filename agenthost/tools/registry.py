"""From an agent's tool configuration to model tool definitions and executors (layer 2).

Permission policies are not applied here: the registry says which policy governs a
tool, the engine decides whether to run it, pause for a confirmation, or refuse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from agenthost.sandbox.base import Sandbox
from agenthost.sandbox.rooted import FileAccessError
from agenthost.tools import bash, files, web_fetch, web_search
from agenthost.tools.base import ToolInputError, ToolOutput
from agenthost.tools.mcp import MCPTool, mcp_tool_name

Executor = Callable[[Sandbox, dict[str, Any]], Awaitable[ToolOutput]]

BUILTIN: dict[str, tuple[str, dict[str, Any], Executor]] = {
    "bash": (bash.DESCRIPTION, bash.SCHEMA, bash.run),
    "read": (*files.SCHEMAS["read"], files.read),
    "write": (*files.SCHEMAS["write"], files.write),
    "edit": (*files.SCHEMAS["edit"], files.edit),
    "glob": (*files.SCHEMAS["glob"], files.glob),
    "grep": (*files.SCHEMAS["grep"], files.grep),
}


@dataclass(frozen=True)
class ToolSpec:
    """One tool the model may call: built-in (sandbox or server), custom (the client) or an MCP server's."""

    name: str
    kind: Literal["builtin", "custom", "mcp"]
    policy: str
    server: str | None = None
    """MCP tools: the server's name in the agent's ``mcp_servers``."""
    tool: str | None = None
    """MCP tools: the tool's own name on its server."""


class Toolbox:
    """The tools of one session's agent snapshot."""

    def __init__(
        self,
        agent: dict[str, Any],
        *,
        private_hosts: frozenset[str] = frozenset(),
        grep_timeout: float = files.GREP_TIMEOUT,
        search_url: str | None = None,
    ):
        self.definitions: list[dict[str, Any]] = []
        self._grep_timeout = grep_timeout
        self._specs: dict[str, ToolSpec] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        self._private_hosts = private_hosts
        self._search_url = search_url
        self.mcp_servers = [server["name"] for server in agent.get("mcp_servers", [])]
        self._agent_tools: list[dict[str, Any]] = agent.get("tools", [])
        for tool in agent.get("tools", []):
            if tool["type"] == "agent_toolset_20260401":
                self._add_toolset(tool)
            elif tool["type"] == "custom":
                self._specs[tool["name"]] = ToolSpec(tool["name"], "custom", "always_allow")
                self.definitions.append(
                    {"name": tool["name"], "description": tool["description"], "input_schema": tool["input_schema"]}
                )

    def _add_toolset(self, toolset: dict[str, Any]) -> None:
        default = toolset["default_config"]
        configs = {config["name"]: config for config in toolset["configs"]}
        offered = [(name, description, schema) for name, (description, schema, _run) in BUILTIN.items()]
        offered.append(("web_fetch", web_fetch.DESCRIPTION, web_fetch.SCHEMA))
        if self._search_url:  # without the operator's search service there is nothing to search with
            offered.append(("web_search", web_search.DESCRIPTION, web_search.SCHEMA))
        for name, description, schema in offered:
            config = configs.get(name, default)
            if not config["enabled"]:
                continue
            self._specs[name] = ToolSpec(name, "builtin", config["permission_policy"]["type"])
            self._configs[name] = config
            self.definitions.append({"name": name, "description": description, "input_schema": schema})

    def add_mcp(self, server: str, tools: list[MCPTool]) -> None:
        """Offer a connected MCP server's tools, filtered and governed by its ``mcp_toolset``."""
        toolset = next(
            (t for t in self._agent_tools if t["type"] == "mcp_toolset" and t["mcp_server_name"] == server), None
        )
        if toolset is None:
            return
        configs = {config["name"]: config for config in toolset["configs"]}
        for tool in tools:
            config = configs.get(tool.name, toolset["default_config"])
            if not config["enabled"]:
                continue
            name = mcp_tool_name(server, tool.name)
            self._specs[name] = ToolSpec(name, "mcp", config["permission_policy"]["type"], server, tool.name)
            self.definitions.append({"name": name, "description": tool.description, "input_schema": tool.input_schema})

    def spec(self, name: str) -> ToolSpec | None:
        """The tool called ``name``, or None when the agent does not have it enabled."""
        return self._specs.get(name)

    async def execute(self, name: str, tool_input: dict[str, Any], sandbox: Sandbox | None) -> ToolOutput:
        """Run a built-in tool; bad input and refused paths become error results the model can read.

        ``web_fetch`` and ``web_search`` run in the server and need no sandbox; every other tool does.
        """
        try:
            if name == "web_fetch":
                return await web_fetch.run(tool_input, self._configs[name], self._private_hosts)
            if name == "web_search" and self._search_url:
                return await web_search.run(tool_input, self._configs[name], self._search_url)
            if sandbox is None:
                raise ValueError(f"{name} runs in the session's sandbox, and none was given")
            if name == "grep":
                return await files.grep(sandbox, tool_input, self._grep_timeout)
            return await BUILTIN[name][2](sandbox, tool_input)
        except (ToolInputError, FileAccessError) as exc:
            return ToolOutput.text(str(exc), is_error=True)
        except PermissionError as exc:
            return ToolOutput.text(f"Permission denied: {exc}", is_error=True)
        except (OSError, ValueError) as exc:  # ValueError: bad glob patterns, undecodable or unencodable text
            return ToolOutput.text(f"{type(exc).__name__}: {exc}", is_error=True)
