"""What a run sets up before its first call (layer 3): the sandbox it needs, vault credentials, MCP servers.

Each function returns what it found and the ``session.error`` events to log for what it could
not set up; the turn goes on without that part (a credential whose host the network policy
does not allow, an MCP server that does not answer), and the next run tries again.
"""

from __future__ import annotations

from agenthost.engine.mcp_servers import connect as connect_mcp
from agenthost.engine.mcp_servers import secret_injections
from agenthost.engine.memory_mounts import memory_mounts
from agenthost.sandbox.base import NetworkPolicy, Packages, SandboxSpec, SecretInjection
from agenthost.schemas.common import JSON
from agenthost.store.vaults import Credential, Vaults
from agenthost.tools.mcp import MCPConnection


def sandbox_spec(session_id: str, config: JSON, agent: JSON, resources: list[JSON] | None = None) -> SandboxSpec:
    """The sandbox a session of this environment config and agent (and these resources) needs."""
    mcp_urls = [server["url"] for server in agent.get("mcp_servers", []) if server.get("url")]
    return SandboxSpec(
        session_id,
        NetworkPolicy.from_environment(config.get("networking") or {}, mcp_urls),
        Packages.from_environment(config.get("packages") or {}),
        memory_mounts(resources or []),
    )


def sandbox_refusal(recorded: str | None, ours: str) -> str | None:
    """Why this server cannot run a session's tools whose files are in a ``recorded`` backend, or None."""
    if recorded in (None, ours):
        return None
    return (
        f"This session's files are in a `{recorded}` sandbox, but this server runs `{ours}` sandboxes; "
        "its tools cannot run here."
    )


async def credentials(
    vaults: Vaults | None, workspace_id: str, vault_ids: list[str], session_id: str, network: NetworkPolicy
) -> tuple[list[Credential], tuple[SecretInjection, ...], list[JSON]]:
    """The session's vault credentials, the variables its sandbox gets, and errors for unreachable hosts."""
    found = await vaults.resolve(workspace_id, vault_ids) if vaults is not None and vault_ids else []
    secrets, unreachable = secret_injections(session_id, found, network)
    errors = [
        {
            "type": "session.error",
            "error": {
                "type": "credential_host_unreachable_error",
                "message": f"the environment's network policy does not allow {host}, which credential "
                f"{credential.id} is for",
                "credential_id": credential.id,
                "vault_id": credential.vault_id,
                "retry_status": {"type": "retrying"},
            },
        }
        for credential, host in unreachable
    ]
    return found, secrets, errors


async def mcp_servers(
    agent: JSON, vaults: Vaults | None, found: list[Credential]
) -> tuple[dict[str, MCPConnection], list[JSON]]:
    """The agent's MCP servers that connected, and an error event for each that did not."""
    connected, failed = await connect_mcp(agent, vaults, found)
    errors = [
        {
            "type": "session.error",
            "error": {
                "type": failure.kind,
                "message": failure.message,
                "mcp_server_name": server,
                "retry_status": {"type": "retrying"},  # the next run connects again
            },
        }
        for server, failure in failed
    ]
    return connected, errors
