"""Agents: create/update bodies and the stored configuration (layer 0).

An agent version is one JSON document, the *config*: every field of the wire object
except ``id``, ``type``, ``version`` and the timestamps. Updates build a new config
and create a version only when it differs from the stored one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.common import JSON, Body, Description, Version, check_metadata, patch_metadata
from agenthost.schemas.tools import (
    ExecutionIdentity,
    MCPServer,
    ModelParam,
    Skill,
    Tool,
    reparse_tools,
    require_read,
    resolve_identity,
    resolve_model,
    resolve_skills,
    resolve_tools,
)

Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
System = Annotated[str, StringConstraints(max_length=100_000)]


class AgentCreate(Body):
    model: ModelParam
    name: Name
    description: Description | None = None
    system: System | None = None
    tools: list[Tool] = Field(default_factory=list)
    mcp_servers: list[MCPServer] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    multiagent: dict[str, Any] | None = None
    execution_identity: ExecutionIdentity | None = None


class AgentUpdate(Body):
    name: Name | None = None
    model: ModelParam | None = None
    description: Description | None = None
    system: System | None = None
    tools: list[Tool] | None = None
    mcp_servers: list[MCPServer] | None = None
    skills: list[Skill] | None = None
    metadata: dict[str, str | None] | None = None
    multiagent: dict[str, Any] | None = None
    execution_identity: ExecutionIdentity | None = None
    version: Version | None = None


def _refuse_multiagent(value: dict[str, Any] | None) -> None:
    if value is not None:
        raise NotSupported("multiagent", "multiagent orchestration")


def config_from_create(body: AgentCreate) -> JSON:
    """The stored config of a new agent, every default filled in."""
    _refuse_multiagent(body.multiagent)
    tools, servers = resolve_tools(body.tools, body.mcp_servers)
    return {
        "name": body.name,
        "description": body.description or None,
        "system": body.system or None,
        "model": resolve_model(body.model),
        "tools": tools,
        "mcp_servers": servers,
        "skills": resolve_skills(body.skills, tools),
        "execution_identity": resolve_identity(body.execution_identity),
        "multiagent": None,
        "metadata": check_metadata(body.metadata),
    }


def config_from_update(current: JSON, body: AgentUpdate) -> JSON:
    """The config after applying an update: omitted keys kept, null clears."""
    for field in ("name", "model"):
        if body.given(field) and getattr(body, field) is None:
            raise InvalidRequest(f"{field}: cannot be cleared")
    _refuse_multiagent(body.multiagent)
    config = dict(current)
    if body.name is not None:
        config["name"] = body.name
    if body.model is not None:
        config["model"] = resolve_model(body.model, current["model"])
    for field in ("description", "system"):
        if body.given(field):
            config[field] = getattr(body, field) or None
    if body.given("execution_identity"):
        config["execution_identity"] = resolve_identity(body.execution_identity)
    if body.given("metadata"):
        config["metadata"] = patch_metadata(current["metadata"], body.metadata)
    if body.given("tools") or body.given("mcp_servers"):
        tools = (body.tools or []) if body.given("tools") else None
        servers = (body.mcp_servers or []) if body.given("mcp_servers") else None
        config["tools"], config["mcp_servers"] = retool(current, tools, servers)
    if body.given("skills"):
        config["skills"] = resolve_skills(body.skills or [], config["tools"])
    elif body.given("tools"):
        require_read(config["skills"], config["tools"], "tools")
    return config


def retool(current: JSON, tools: list[Any] | None, servers: list[MCPServer] | None) -> tuple[list[JSON], list[JSON]]:
    """Resolve replacement tools and/or MCP servers; the side not given is re-validated from storage."""
    tool_params = tools if tools is not None else reparse_tools(current["tools"])
    server_params = servers if servers is not None else [MCPServer(**s) for s in current["mcp_servers"]]
    return resolve_tools(tool_params, server_params)


def agent_json(
    agent_id: str, version: int, config: JSON, created_at: str, updated_at: str, archived_at: str | None
) -> JSON:
    """The wire Agent object."""
    return {
        "id": agent_id,
        "type": "agent",
        "version": version,
        **config,
        "created_at": created_at,
        "updated_at": updated_at,
        "archived_at": archived_at,
    }
