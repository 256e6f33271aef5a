"""Agent tools, MCP servers, skills and model config: request shapes and their resolved wire form (layer 0).

The resolved form is what the server stores and echoes: every default filled in, tool configs
tagged with ``type`` = name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StringConstraints, TypeAdapter

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.common import JSON, MAX_TOOL_DESCRIPTION, Body, Text

BUILTIN_TOOLS = ("bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search")
MAX_TOOLS = 128
MAX_MCP_SERVERS = 20
MAX_SKILLS = 20
MAX_DOMAINS = 64
MAX_SCHEMA_DEPTH = 64
ANTHROPIC_SKILLS = ("xlsx", "docx", "pptx", "pdf")
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
DEFAULT_EFFORT = "high"

Level = Literal["low", "medium", "high", "xhigh", "max"]


# -- permission policies ------------------------------------------------------------------------


class AlwaysAllow(Body):
    type: Literal["always_allow"]


class AlwaysAsk(Body):
    type: Literal["always_ask"]


class Auto(Body):
    type: Literal["auto"]


Policy = Annotated[AlwaysAllow | AlwaysAsk | Auto, Field(discriminator="type")]


class DefaultConfig(Body):
    enabled: StrictBool | None = None
    permission_policy: Policy | None = None


# -- built-in toolset ---------------------------------------------------------------------------


class _ToolConfig(Body):
    enabled: StrictBool | None = None
    permission_policy: Policy | None = None


class BashConfig(_ToolConfig):
    name: Literal["bash"]
    type: Literal["bash"] | None = None


class EditConfig(_ToolConfig):
    name: Literal["edit"]
    type: Literal["edit"] | None = None


class ReadConfig(_ToolConfig):
    name: Literal["read"]
    type: Literal["read"] | None = None


class WriteConfig(_ToolConfig):
    name: Literal["write"]
    type: Literal["write"] | None = None


class GlobConfig(_ToolConfig):
    name: Literal["glob"]
    type: Literal["glob"] | None = None


class GrepConfig(_ToolConfig):
    name: Literal["grep"]
    type: Literal["grep"] | None = None


class AllSources(Body):
    type: Literal["all"]


class NoSources(Body):
    type: Literal["none"]


class ToolReference(Body):
    type: Literal["tool_reference"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SomeSources(Body):
    type: Literal["only", "except"]
    tools: Annotated[list[ToolReference], Field(min_length=1, max_length=128)]


UserInputFilter = Literal["all", "none"] | Annotated[AllSources | NoSources, Field(discriminator="type")]
ToolResultFilter = Literal["all", "none"] | Annotated[AllSources | NoSources | SomeSources, Field(discriminator="type")]


class UrlSources(Body):
    user_input: UserInputFilter | None = None
    client_tool_results: ToolResultFilter | None = None
    server_tool_results: ToolResultFilter | None = None


class WebFetchConfig(_ToolConfig):
    name: Literal["web_fetch"]
    type: Literal["web_fetch"] | None = None
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    max_content_tokens: Annotated[int, Field(gt=0)] | None = None
    url_sources: UrlSources | None = None


class UserLocation(Body):
    type: Literal["approximate"]
    city: str | None = None
    country: Annotated[str, StringConstraints(min_length=2, max_length=2)] | None = None
    region: str | None = None
    timezone: str | None = None


class WebSearchConfig(_ToolConfig):
    name: Literal["web_search"]
    type: Literal["web_search"] | None = None
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    user_location: UserLocation | None = None


ToolConfig = Annotated[
    BashConfig | EditConfig | ReadConfig | WriteConfig | GlobConfig | GrepConfig | WebFetchConfig | WebSearchConfig,
    Field(discriminator="name"),
]


class AgentToolset(Body):
    type: Literal["agent_toolset_20260401"]
    configs: list[ToolConfig] = Field(default_factory=list)
    default_config: DefaultConfig | None = None


# -- MCP and custom tools -----------------------------------------------------------------------


class MCPToolConfig(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    enabled: StrictBool | None = None
    permission_policy: Policy | None = None


class MCPToolset(Body):
    type: Literal["mcp_toolset"]
    mcp_server_name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    configs: list[MCPToolConfig] = Field(default_factory=list)
    default_config: DefaultConfig | None = None


class InputSchema(Body):
    # JSON Schema keywords beyond these are allowed, so extras are kept.
    model_config = ConfigDict(extra="allow")

    type: Literal["object"]
    properties: dict[str, Any] | None = None
    required: list[str] | None = None


class CustomTool(Body):
    type: Literal["custom"]
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
    description: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOOL_DESCRIPTION)]
    input_schema: InputSchema


Tool = Annotated[AgentToolset | MCPToolset | CustomTool, Field(discriminator="type")]


class MCPServer(Body):
    type: Literal["url"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


SkillRef = Annotated[Text, StringConstraints(min_length=1, max_length=128)]


class AnthropicSkill(Body):
    type: Literal["anthropic"]
    skill_id: SkillRef
    version: SkillRef | None = None


class CustomSkill(Body):
    type: Literal["custom"]
    skill_id: SkillRef
    version: SkillRef | None = None


Skill = Annotated[AnthropicSkill | CustomSkill, Field(discriminator="type")]


class ServiceAccount(Body):
    type: Literal["service_account"]


class AwsRole(Body):
    type: Literal["aws_role"]
    role_arn: Annotated[str, StringConstraints(min_length=1, max_length=2048)]


ExecutionIdentity = Annotated[ServiceAccount | AwsRole, Field(discriminator="type")]


class EffortObject(Body):
    type: Level


class ModelConfig(Body):
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    effort: Level | EffortObject | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None


ModelParam = Annotated[str, StringConstraints(min_length=1, max_length=256)] | ModelConfig


# -- resolution ---------------------------------------------------------------------------------


def resolve_model(model: str | ModelConfig, previous: JSON | None = None) -> JSON:
    """The stored ModelConfig: always an object, effort resolved."""
    config = ModelConfig(id=model) if isinstance(model, str) else model
    if config.effort is None:
        keep = previous is not None and previous["id"] == config.id and not config.given("effort")
        effort = previous["effort"] if keep and previous is not None else {"type": DEFAULT_EFFORT}
    elif isinstance(config.effort, str):
        effort = {"type": config.effort}
    else:
        effort = {"type": config.effort.type}
    return {
        "id": config.id,
        "effort": effort,
        "inference_geo": config.inference_geo,
        "speed": config.speed or "standard",
    }


def _policy(policy: Policy | None, default: JSON) -> JSON:
    return {"type": policy.type} if policy is not None else default


def _sources(value: Any) -> JSON | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"type": value}
    return value.model_dump(exclude_none=True)


def _check_domains(config: WebFetchConfig | WebSearchConfig, field: str) -> None:
    if config.allowed_domains is not None and config.blocked_domains is not None:
        raise InvalidRequest(f"{field}: allowed_domains and blocked_domains cannot be combined")
    for key in ("allowed_domains", "blocked_domains"):
        domains: list[str] | None = getattr(config, key)
        if domains is None:
            continue
        if not 1 <= len(domains) <= MAX_DOMAINS:
            raise InvalidRequest(f"{field}.{key}: give 1-{MAX_DOMAINS} entries (omit the field for none)")
        if len(set(domains)) != len(domains):
            raise InvalidRequest(f"{field}.{key}: duplicate entries")
        for index, domain in enumerate(domains):
            if not _plain_hostname(domain, allow_path=isinstance(config, WebSearchConfig)):
                raise InvalidRequest(f"{field}.{key}[{index}]: {domain!r} is not a plain public hostname")


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PRIVATE_SUFFIXES = (".local", ".internal", ".localdomain", ".invalid", ".localhost")


def _plain_hostname(value: str, *, allow_path: bool) -> bool:
    """A hostname as domain lists allow it: dotted, no IP, no private names (path only for search)."""
    host, slash, _path = value.partition("/")
    if slash and not allow_path:
        return False
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or host != host.lower():
        return False
    if labels[-1].isdigit() or host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        return False
    return True


def _resolve_toolset(tool: AgentToolset, field: str) -> JSON:
    base = tool.default_config or DefaultConfig()
    default = {
        "enabled": True if base.enabled is None else base.enabled,
        "permission_policy": _policy(base.permission_policy, {"type": "always_allow"}),
    }
    seen: set[str] = set()
    configs: list[JSON] = []
    for index, config in enumerate(tool.configs):
        where = f"{field}.configs[{index}]"
        if config.name in seen:
            raise InvalidRequest(f"{where}.name: {config.name!r} is configured twice")
        seen.add(config.name)
        resolved: JSON = {
            "name": config.name,
            "type": config.name,
            "enabled": default["enabled"] if config.enabled is None else config.enabled,
            "permission_policy": _policy(config.permission_policy, default["permission_policy"]),
        }
        if isinstance(config, WebFetchConfig):
            _check_domains(config, where)
            sources = config.url_sources
            if sources is not None and all(
                _sources(getattr(sources, k)) == {"type": "none"}
                for k in ("user_input", "client_tool_results", "server_tool_results")
            ):
                raise InvalidRequest(f"{where}.url_sources: setting every source to 'none' is not allowed")
            resolved |= {
                "allowed_domains": config.allowed_domains,
                "blocked_domains": config.blocked_domains,
                "max_content_tokens": config.max_content_tokens,
                "url_sources": None
                if sources is None
                else {
                    k: _sources(getattr(sources, k))
                    for k in ("user_input", "client_tool_results", "server_tool_results")
                },
            }
        elif isinstance(config, WebSearchConfig):
            _check_domains(config, where)
            if config.user_location is not None:
                raise NotSupported(f"{where}.user_location", "locating web_search results (SearXNG has no location)")
            resolved |= {
                "allowed_domains": config.allowed_domains,
                "blocked_domains": config.blocked_domains,
                "user_location": None if config.user_location is None else config.user_location.model_dump(),
            }
        configs.append(resolved)
    return {"type": tool.type, "configs": configs, "default_config": default}


def _resolve_mcp_toolset(tool: MCPToolset, field: str) -> JSON:
    base = tool.default_config or DefaultConfig()
    default = {
        "enabled": True if base.enabled is None else base.enabled,
        # MCP tools ask by default so new server tools never run unreviewed.
        "permission_policy": _policy(base.permission_policy, {"type": "always_ask"}),
    }
    seen: set[str] = set()
    configs: list[JSON] = []
    for index, config in enumerate(tool.configs):
        if config.name in seen:
            raise InvalidRequest(f"{field}.configs[{index}].name: {config.name!r} is configured twice")
        seen.add(config.name)
        configs.append(
            {
                "name": config.name,
                "enabled": default["enabled"] if config.enabled is None else config.enabled,
                "permission_policy": _policy(config.permission_policy, default["permission_policy"]),
            }
        )
    return {"type": tool.type, "mcp_server_name": tool.mcp_server_name, "configs": configs, "default_config": default}


def _check_input_schema(schema: InputSchema, field: str) -> None:
    for keyword in ("oneOf", "anyOf", "allOf"):
        if keyword in (schema.model_extra or {}):
            raise InvalidRequest(f"{field}.input_schema.{keyword}: not allowed at the top level")

    def walk(node: Any, path: str, depth: int = 0) -> None:
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidRequest(f"{field}.input_schema: nested deeper than {MAX_SCHEMA_DEPTH} levels")
        if isinstance(node, dict):
            if "$ref" in node:
                raise InvalidRequest(f"{path}.$ref: references are not allowed in input_schema")
            for key, value in node.items():
                walk(value, f"{path}.{key}", depth + 1)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]", depth + 1)

    walk(schema.model_dump(exclude_none=True), f"{field}.input_schema")
    for name in schema.properties or {}:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise InvalidRequest(f"{field}.input_schema.properties: invalid property name {name!r}")


def resolve_tools(
    tools: list[Any], mcp_servers: list[MCPServer], *, field: str = "tools"
) -> tuple[list[JSON], list[JSON]]:
    """Validate tools against MCP servers and return both in resolved form."""
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"{field}: at most {MAX_TOOLS} entries are allowed")
    if len(mcp_servers) > MAX_MCP_SERVERS:
        raise InvalidRequest(f"mcp_servers: at most {MAX_MCP_SERVERS} servers are allowed")
    server_names: list[str] = []
    for index, server in enumerate(mcp_servers):
        if server.name in server_names:
            raise InvalidRequest(f"mcp_servers[{index}].name: {server.name!r} is used twice")
        if not re.match(r"^https?://[^\s/]+", server.url):
            raise InvalidRequest(f"mcp_servers[{index}].url: must be an http(s) URL")
        server_names.append(server.name)

    resolved: list[JSON] = []
    toolset_seen = False
    referenced: set[str] = set()
    custom_names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"{field}[{index}]"
        if isinstance(tool, AgentToolset):
            if toolset_seen:
                raise InvalidRequest(f"{where}: agent_toolset_20260401 is given twice")
            toolset_seen = True
            resolved.append(_resolve_toolset(tool, where))
        elif isinstance(tool, MCPToolset):
            if tool.mcp_server_name not in server_names:
                raise InvalidRequest(f"{where}.mcp_server_name: no MCP server named {tool.mcp_server_name!r}")
            if tool.mcp_server_name in referenced:
                raise InvalidRequest(f"{where}.mcp_server_name: {tool.mcp_server_name!r} has two toolsets")
            referenced.add(tool.mcp_server_name)
            resolved.append(_resolve_mcp_toolset(tool, where))
        else:
            if tool.name in BUILTIN_TOOLS or tool.name.startswith("mcp__"):
                raise InvalidRequest(f"{where}.name: {tool.name!r} is reserved for built-in or MCP tools")
            if tool.name in custom_names:
                raise InvalidRequest(f"{where}.name: custom tool {tool.name!r} is defined twice")
            custom_names.add(tool.name)
            _check_input_schema(tool.input_schema, where)
            resolved.append(
                {
                    "type": "custom",
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.input_schema.model_dump(exclude_unset=True),
                }
            )
    for index, name in enumerate(server_names):
        if name not in referenced:
            raise InvalidRequest(f"mcp_servers[{index}]: server {name!r} is not referenced by any mcp_toolset")
    return resolved, [{"type": "url", "name": s.name, "url": s.url} for s in mcp_servers]


def resolve_skills(skills: list[Any], tools: list[JSON], *, field: str = "skills") -> list[JSON]:
    """Resolved skill references: version filled in, ``latest`` when omitted.

    That custom skills (and pinned versions) exist in the workspace is the store's check
    (``Skills.check_references``), made by the route before it writes.
    """
    if len(skills) > MAX_SKILLS:
        raise InvalidRequest(f"{field}: at most {MAX_SKILLS} skills are allowed")
    resolved: list[JSON] = []
    seen: dict[tuple[str, str], int] = {}
    for index, skill in enumerate(skills):
        if isinstance(skill, AnthropicSkill) and skill.skill_id not in ANTHROPIC_SKILLS:
            raise InvalidRequest(
                f"{field}[{index}].skill_id: unknown Anthropic skill {skill.skill_id!r} "
                f"(one of {', '.join(ANTHROPIC_SKILLS)})"
            )
        if skill.version is not None and not skill.version.strip():
            raise InvalidRequest(f"{field}[{index}].version: must not be blank (omit it for the latest version)")
        key = (skill.type, skill.skill_id)
        if key in seen:
            raise InvalidRequest(f"{field}[{index}].skill_id: {skill.skill_id!r} is listed twice (also [{seen[key]}])")
        seen[key] = index
        resolved.append({"type": skill.type, "skill_id": skill.skill_id, "version": skill.version or "latest"})
    require_read(resolved, tools, field)
    return resolved


def require_read(skills: list[JSON], tools: list[JSON], field: str) -> None:
    """Skills are read from the sandbox, so an agent with skills needs the built-in read tool."""
    if skills and not read_enabled(tools):
        raise InvalidRequest(f"{field}: skills need the built-in read tool enabled in tools")


def read_enabled(tools: list[JSON]) -> bool:
    for tool in tools:
        if tool["type"] == "agent_toolset_20260401":
            for config in tool["configs"]:
                if config["name"] == "read":
                    return bool(config["enabled"])
            return bool(tool["default_config"]["enabled"])
    return False


def resolve_identity(identity: Any) -> JSON:
    """Execution identity: null or omitted stores the default service account."""
    if identity is None or isinstance(identity, ServiceAccount):
        return {"type": "service_account"}
    return {"type": "aws_role", "role_arn": identity.role_arn}


_TOOLS: TypeAdapter[list[Tool]] = TypeAdapter(list[Tool])


def reparse_tools(stored: list[JSON]) -> list[Any]:
    """Turn stored (resolved) tools back into request models so they can be validated again."""

    def strip(tool: JSON) -> JSON:
        if tool["type"] == "custom":
            return tool
        return {**tool, "configs": [{k: v for k, v in c.items() if v is not None} for c in tool["configs"]]}

    return _TOOLS.validate_python([strip(t) for t in stored])
