"""Sessions: create/update bodies, the agent snapshot and the wire Session (layer 0)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.agents import retool
from agenthost.schemas.common import JSON, Body, Id, Title, Version, check_metadata
from agenthost.schemas.events import InitialEvent
from agenthost.schemas.resources import ResourceParam, parse_resource
from agenthost.schemas.tools import MCPServer, ModelParam, Skill, Tool, require_read, resolve_model, resolve_skills

STATUSES = ("rescheduling", "running", "idle", "terminated")


class AgentRef(Body):
    type: Literal["agent"]
    id: Id
    version: Version | None = None


class AgentWithOverrides(Body):
    type: Literal["agent_with_overrides"]
    id: Id
    version: Version | None = None
    model: ModelParam | None = None
    system: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    tools: list[Tool] | None = None
    mcp_servers: list[MCPServer] | None = None
    skills: list[Skill] | None = None


AgentParam = Id | Annotated[AgentRef | AgentWithOverrides, Field(discriminator="type")]


class SessionCreate(Body):
    agent: AgentParam
    environment_id: Id
    title: Title | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    resources: list[Any] = Field(default_factory=list, max_length=1000)
    vault_ids: list[Id] = Field(default_factory=list, max_length=100)
    budget: dict[str, Any] | None = None
    initial_events: list[InitialEvent] = Field(default_factory=list, max_length=50)

    def check_unsupported(self) -> None:
        """Refuse what this server cannot honour yet instead of ignoring it."""
        if len(set(self.vault_ids)) != len(self.vault_ids):
            raise InvalidRequest("vault_ids: a vault is listed twice")
        if self.given("budget") and self.budget is not None:
            raise NotSupported("budget", "session budgets")
        check_metadata(self.metadata)

    def parsed_resources(self) -> list[ResourceParam]:
        """The ``resources`` entries, each validated (files, memory stores and GitHub repositories)."""
        return [parse_resource(raw, f"resources[{index}]") for index, raw in enumerate(self.resources)]


class SessionAgentUpdate(Body):
    tools: list[Tool] | None = None
    mcp_servers: list[MCPServer] | None = None


class SessionUpdate(Body):
    title: Title | None = None
    metadata: dict[str, str | None] | None = None
    agent: SessionAgentUpdate | None = None
    budget: dict[str, Any] | None = None
    vault_ids: list[str] | None = None

    def check_unsupported(self) -> None:
        if self.given("vault_ids"):
            raise NotSupported("vault_ids", "changing vault_ids of a session")
        if self.budget is not None:  # null removes a budget: nothing to do on a session without one
            raise InvalidRequest(
                "budget: a budget cannot be added to a session created without one", error_code="budget_create_only"
            )


def snapshot(agent_id: str, version: int, config: JSON) -> JSON:
    """The session's agent snapshot: the agent version minus metadata and timestamps."""
    return {
        "id": agent_id,
        "type": "agent",
        "version": version,
        "name": config["name"],
        "description": config["description"],
        "system": config["system"],
        "model": config["model"],
        "tools": config["tools"],
        "mcp_servers": config["mcp_servers"],
        "skills": config["skills"],
        "execution_identity": config["execution_identity"],
        "multiagent": None,
    }


def apply_overrides(agent: JSON, overrides: AgentWithOverrides) -> JSON:
    """Overrides replace wholesale; null or [] clears; omitted inherits from the agent."""
    result = dict(agent)
    if overrides.given("model"):
        if overrides.model is None:
            raise InvalidRequest("agent.model: cannot be null", error_code="agent_model_required")
        # A model override runs at that model's default effort and drops the geo pin unless restated.
        result["model"] = resolve_model(overrides.model)
    if overrides.given("system"):
        result["system"] = overrides.system or None
    if overrides.given("tools") or overrides.given("mcp_servers"):
        tools = (overrides.tools or []) if overrides.given("tools") else None
        servers = (overrides.mcp_servers or []) if overrides.given("mcp_servers") else None
        try:
            result["tools"], result["mcp_servers"] = retool(agent, tools, servers)
        except InvalidRequest as exc:
            raise InvalidRequest(f"agent.{exc.message}") from None
    if overrides.given("skills"):
        result["skills"] = resolve_skills(overrides.skills or [], result["tools"], field="agent.skills")
    elif overrides.given("tools"):
        require_read(result["skills"], result["tools"], "agent.tools")
    return result


def empty_usage() -> JSON:
    """A session's usage before any model call."""
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "server_tool_use": {"web_fetch_requests": 0, "web_search_requests": 0},
        "list_cost": None,
        "active_seconds": 0.0,
    }


def session_json(
    *,
    session_id: str,
    status: str,
    title: str | None,
    agent: JSON,
    environment_id: str,
    metadata: dict[str, str],
    resources: list[JSON],
    vault_ids: list[str],
    usage: JSON,
    active_seconds: float,
    duration_seconds: float,
    deployment_id: str | None,
    created_at: str,
    updated_at: str,
    archived_at: str | None,
) -> JSON:
    """The wire Session object, every field present."""
    return {
        "id": session_id,
        "type": "session",
        "status": status,
        "title": title,
        "agent": agent,
        "environment_id": environment_id,
        "resources": resources,
        "vault_ids": vault_ids,
        "metadata": metadata,
        "stats": {"active_seconds": active_seconds, "duration_seconds": duration_seconds},
        "usage": usage,
        "outcome_evaluations": [],
        "budget": None,
        "deployment_id": deployment_id,
        "created_at": created_at,
        "updated_at": updated_at,
        "archived_at": archived_at,
    }
