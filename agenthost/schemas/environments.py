"""Environments: create/update bodies and the stored config (layer 0)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StringConstraints

from agenthost.errors import InvalidRequest, NotSupported
from agenthost.schemas.common import JSON, Body, Description, Text, check_metadata, patch_metadata

MANAGERS = ("apt", "cargo", "gem", "go", "npm", "pip")


class Unrestricted(Body):
    type: Literal["unrestricted"]


class Limited(Body):
    type: Literal["limited"]
    allowed_hosts: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] | None = None
    allow_mcp_servers: StrictBool | None = None
    allow_package_managers: StrictBool | None = None


Networking = Annotated[Unrestricted | Limited, Field(discriminator="type")]


class Packages(Body):
    type: Literal["packages"] | None = None
    apt: list[str] | None = None
    cargo: list[str] | None = None
    gem: list[str] | None = None
    go: list[str] | None = None
    npm: list[str] | None = None
    pip: list[str] | None = None


class CloudConfig(Body):
    type: Literal["cloud"]
    networking: Networking | None = None
    packages: Packages | None = None


class SelfHostedConfig(Body):
    type: Literal["self_hosted"]


Config = Annotated[CloudConfig | SelfHostedConfig, Field(discriminator="type")]
Name = Annotated[Text, StringConstraints(min_length=1, max_length=256)]
Scope = Literal["organization", "account"]


class EnvironmentCreate(Body):
    name: Name
    config: Config | None = None
    description: Description | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    scope: Scope | None = None


class EnvironmentUpdate(Body):
    name: Name | None = None
    config: Config | None = None
    description: Description | None = None
    metadata: dict[str, str | None] | None = None
    scope: Scope | None = None


def _networking(param: Unrestricted | Limited | None, current: JSON | None) -> JSON:
    if param is None:
        return current or {"type": "unrestricted"}
    if isinstance(param, Unrestricted):
        return {"type": "unrestricted"}
    # On update, omitted limited fields keep their stored value.
    base = current if current is not None and current["type"] == "limited" else {}
    hosts = param.allowed_hosts if param.allowed_hosts is not None else base.get("allowed_hosts", [])
    for index, host in enumerate(hosts):
        bare = host.removeprefix("*.")
        if "/" in host or ":" in host or not bare or "*" in bare:
            raise InvalidRequest(
                f"config.networking.allowed_hosts[{index}]: {host!r} must be a bare hostname or *.suffix"
            )
    return {
        "type": "limited",
        "allowed_hosts": list(hosts),
        "allow_mcp_servers": _flag(param.allow_mcp_servers, base.get("allow_mcp_servers")),
        "allow_package_managers": _flag(param.allow_package_managers, base.get("allow_package_managers")),
    }


def _flag(value: bool | None, stored: bool | None) -> bool:
    if value is not None:
        return value
    return bool(stored)


UNSUPPORTED_MANAGERS = ("apt", "cargo", "gem", "go")  # docs/sandbox.md: sandboxes have no writable system root


def _packages(param: Packages | None, current: JSON | None) -> JSON:
    base = current or {"type": "packages", **{m: [] for m in MANAGERS}}
    if param is None:
        return base
    result: JSON = {"type": "packages"}
    for manager in MANAGERS:
        if param.given(manager):
            result[manager] = list(getattr(param, manager) or [])
        else:
            result[manager] = list(base[manager])
    return result


def resolve_config(param: CloudConfig | SelfHostedConfig | None, current: JSON | None = None) -> JSON:
    """The stored config: a cloud config with networking and all six package lists, or self_hosted."""
    if param is None:
        if current is not None:
            return current
        param = CloudConfig(type="cloud")
    if current is not None and current["type"] != param.type:
        raise InvalidRequest(
            f"config.type: cannot change an environment from {current['type']!r} to {param.type!r}",
            error_code="invalid_config_type_change",
        )
    if isinstance(param, SelfHostedConfig):
        return {"type": "self_hosted"}
    networking = _networking(param.networking, current["networking"] if current else None)
    packages = _packages(param.packages, current["packages"] if current else None)
    has_packages = any(packages[m] for m in MANAGERS)
    for manager in UNSUPPORTED_MANAGERS:
        if packages[manager]:
            raise InvalidRequest(
                f"config.packages.{manager}: agenthost cannot install {manager} packages yet (pip and npm it can)"
            )
    if networking["type"] == "limited" and has_packages and not networking["allow_package_managers"]:
        raise InvalidRequest(
            "config.networking.allow_package_managers: must be true when packages are given under limited networking"
        )
    return {"type": "cloud", "networking": networking, "packages": packages}


def _scope(scope: str | None) -> str:
    if scope == "account":
        raise NotSupported("scope", "the 'account' scope (environments are visible to the whole workspace)")
    return "organization"


def config_from_create(body: EnvironmentCreate) -> JSON:
    """Stored fields of a new environment."""
    return {
        "name": body.name,
        "description": body.description,
        "config": resolve_config(body.config),
        "metadata": check_metadata(body.metadata),
        "scope": _scope(body.scope),
    }


def config_from_update(current: JSON, body: EnvironmentUpdate) -> JSON:
    """Stored fields after an update; omitted keys keep their value."""
    result = dict(current)
    if body.given("name"):
        if body.name is None:
            raise InvalidRequest("name: cannot be cleared")
        result["name"] = body.name
    if body.given("description"):
        result["description"] = body.description
    if body.given("config"):
        result["config"] = resolve_config(body.config, current["config"])
    if body.given("metadata"):
        result["metadata"] = patch_metadata(current["metadata"], body.metadata, empty_deletes=True)
    if body.given("scope"):
        result["scope"] = _scope(body.scope)
    return result


def environment_json(env_id: str, fields: JSON, created_at: str, updated_at: str, archived_at: str | None) -> JSON:
    """The wire Environment object; its timestamps are plain strings."""
    return {
        "id": env_id,
        "type": "environment",
        **fields,
        "created_at": created_at,
        "updated_at": updated_at,
        "archived_at": archived_at,
    }
