"""The run's hands (layer 3): where an allowed tool call runs, and what the sandbox needs first.

A call runs on the MCP server that offers it, in the server itself (``web_fetch``,
``web_search``: no sandbox is started for them), or in the session's sandbox. Before a
sandbox call the session's files, memories, skills and repositories are put in place; after
a call that may have written, what it wrote to the outputs directory becomes session files
and what it wrote under the memory mounts becomes memory versions. Calls left to a
self-hosted worker or to the client never reach here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agenthost.engine.journal import Journal
from agenthost.engine.memory_mounts import MemoryMirror
from agenthost.engine.repositories import SessionRepositories
from agenthost.engine.session_files import WRITING_TOOLS, SessionFiles
from agenthost.engine.skill_mounts import SKILLS
from agenthost.engine.skill_mounts import place as place_skills
from agenthost.errors import AgentHostError, Unavailable
from agenthost.sandbox.base import Sandbox, SandboxBackend, SandboxSpec, SandboxUnavailable
from agenthost.schemas.common import JSON
from agenthost.store.skills import SkillArchive
from agenthost.tools.base import ToolOutput
from agenthost.tools.mcp import MCPConnection
from agenthost.tools.registry import Toolbox

log = logging.getLogger("agenthost.engine")
SERVER_TOOLS = frozenset({"web_fetch", "web_search"})  # run by the server itself, never in a sandbox


class Interrupted(Exception):
    """The client sent ``user.interrupt``: stop the model or the tool now."""


class Hands:
    """Runs a session's calls; its fields are set up by the run (``loop.Run._start``) before the first call."""

    def __init__(
        self,
        session_id: str,
        journal: Journal,
        sandboxes: SandboxBackend,
        repositories: SessionRepositories,
        interruptible: Callable[[Awaitable[Any]], Awaitable[Any]],
    ):
        self.session_id = session_id
        self.journal = journal
        self.sandboxes = sandboxes
        self.repositories = repositories
        self._interruptible = interruptible
        self.toolbox = Toolbox({})
        self.mcp: dict[str, MCPConnection] | None = None  # connected at the run's first turn
        self.spec = SandboxSpec(session_id)
        self.sandbox_refusal: str | None = None  # why this server cannot run the session's sandbox, if it cannot
        self.setup_failure: str | None = None  # set when the sandbox could not be set up: the turn ends
        self.session_files: SessionFiles | None = None
        self.memory: MemoryMirror | None = None
        self.skill_versions: list[SkillArchive] | None = None  # resolved at the run's first turn
        self.skills_placed = False

    async def run(self, tool_use: JSON, agent: JSON) -> ToolOutput:
        """Run one allowed call: on an MCP server, in the server (web tools) or in the session's sandbox."""
        if tool_use["type"] == "agent.mcp_tool_use":
            connection = (self.mcp or {}).get(tool_use["mcp_server_name"])
            if connection is None:
                return ToolOutput.text(f"MCP server {tool_use['mcp_server_name']!r} is not connected.", is_error=True)
            return await self._interruptible(connection.call(tool_use["name"], tool_use["input"]))
        if tool_use["name"] in SERVER_TOOLS:  # run in the server: no sandbox is started for them
            return await self._interruptible(self.toolbox.execute(tool_use["name"], tool_use["input"], None))
        if self.sandbox_refusal is not None:
            return ToolOutput.text(self.sandbox_refusal, is_error=True)
        sandbox = await self.sandboxes.get(self.spec)
        resources = self.journal.row.resources  # as the newest write of this run read them
        await self._mount_files(sandbox, resources, agent)
        # A repository that does not clone is an error event, and the call still runs.
        if failed := await self._interruptible(self.repositories.clone(sandbox, resources)):
            await self.journal.append(failed)
        try:
            output = await self._interruptible(self.toolbox.execute(tool_use["name"], tool_use["input"], sandbox))
        except Interrupted:
            await sandbox.interrupt()
            raise
        except SandboxUnavailable as exc:
            await sandbox.close()
            self.setup_failure = f"The session's sandbox could not be set up: {exc}"
            return ToolOutput.text(self.setup_failure, is_error=True)
        if tool_use["name"] in WRITING_TOOLS:
            await self._collect_outputs(sandbox)
            if self.memory is not None:
                try:
                    notes = await self.memory.push(sandbox)
                except (OSError, AgentHostError) as exc:
                    log.warning("saving the memories of %s failed: %s", self.session_id, exc)
                    notes = [f"Changes under /mnt/memory could not be saved: {exc}"]
                if notes:
                    output.content.append({"type": "text", "text": "\n".join(notes)})
        return output

    async def _mount_files(self, sandbox: Sandbox, resources: list[JSON], agent: JSON) -> None:
        """Put the session's file resources and memories in place (``resources``: as the run's newest write
        read them; they may have changed since the last call)."""
        if self.memory is not None:
            try:
                await self.memory.pull(sandbox)
            except (OSError, AgentHostError) as exc:
                log.warning("mirroring the memory stores of %s failed: %s", self.session_id, exc)
        if not any(reference.get("type") == "custom" for reference in agent.get("skills", [])):
            self.skills_placed = True  # the session's agent (a snapshot) never had any: nothing to place or remove
        skills_dir = sandbox.files.host_dir(SKILLS)
        if not self.skills_placed and skills_dir is not None:
            try:
                await asyncio.to_thread(place_skills, skills_dir, self.skill_versions or [])
                self.skills_placed = True
            except OSError as exc:
                log.warning("placing the skills of %s failed: %s", self.session_id, exc)
        if self.session_files is None:
            return
        try:
            await self.session_files.mount(sandbox, resources)
        except (OSError, Unavailable) as exc:
            log.warning("mounting the files of %s failed: %s", self.session_id, exc)

    async def _collect_outputs(self, sandbox: Sandbox) -> None:
        """Keep what the tool wrote to /mnt/session/outputs as session files."""
        if self.session_files is None:
            return
        try:
            await self.session_files.collect(sandbox)
        except (OSError, Unavailable) as exc:
            log.warning("collecting the outputs of %s failed: %s", self.session_id, exc)
