"""The agent's MCP servers for one run, with the session's vault credentials.

Credentials are resolved when a run starts (so rotation, archive and delete apply from the
next run on), matched to servers by normalised URL, first vault first. An OAuth access token
that has expired, or that the server refuses, is refreshed once through the credential's
token endpoint, and the new tokens are kept in the vault.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import httpx2

from agenthost.errors import InvalidRequest
from agenthost.sandbox.base import NetworkPolicy, SecretInjection
from agenthost.schemas.common import JSON, now_us, ts
from agenthost.store.vaults import Credential, Vaults, match_mcp
from agenthost.tools.mcp import MCPConnection, MCPFailure

log = logging.getLogger("agenthost.engine")
EXPIRY_MARGIN_US = 60 * 1_000_000
REFRESH_TIMEOUT = 15.0


@dataclass
class RefreshOutcome:
    """What asking a token endpoint for a new access token gave."""

    status: str  # succeeded | failed | connect_error | no_refresh_token
    access_token: str | None = None
    expires_at: int | None = None
    refresh_token: str | None = None
    http_status: int | None = None
    content_type: str = ""
    body: str = ""
    """The endpoint's answer when it failed (never kept when it succeeded: it carries tokens)."""


async def refresh_access_token(credential: Credential) -> RefreshOutcome:
    """Exchange the credential's refresh token at its token endpoint (RFC 6749 §6)."""
    refresh, secret = credential.auth.get("refresh"), credential.secret or {}
    if not refresh or not secret.get("refresh_token"):
        return RefreshOutcome("no_refresh_token")
    form = {"grant_type": "refresh_token", "refresh_token": secret["refresh_token"]}
    for key in ("resource", "scope"):
        if refresh.get(key):
            form[key] = refresh[key]
    method = refresh["token_endpoint_auth"]["type"]
    auth: tuple[str, str] | None = None
    if method == "client_secret_basic":
        auth = (refresh["client_id"], secret.get("client_secret", ""))
    else:
        form["client_id"] = refresh["client_id"]
        if method == "client_secret_post":
            form["client_secret"] = secret.get("client_secret", "")
    try:
        async with httpx2.AsyncClient(timeout=REFRESH_TIMEOUT) as http:
            response = await http.post(refresh["token_endpoint"], data=form, auth=auth)
    except httpx2.HTTPError:
        return RefreshOutcome("connect_error")
    body, content_type = response.text, response.headers.get("content-type", "")
    try:
        granted = response.json() if response.is_success else {}
    except ValueError:
        granted = {}
    token = granted.get("access_token") if isinstance(granted, dict) else None
    if not isinstance(token, str) or not token:
        return RefreshOutcome("failed", http_status=response.status_code, content_type=content_type, body=body)
    expires_in = granted.get("expires_in")
    valid = isinstance(expires_in, int | float) and 0 < expires_in < 10 * 365 * 86_400  # not NaN, not forever
    expires_at = now_us() + int(expires_in * 1_000_000) if valid else None
    new_refresh = granted.get("refresh_token") if isinstance(granted.get("refresh_token"), str) else None
    return RefreshOutcome("succeeded", token, expires_at, new_refresh, response.status_code, content_type)


def bearer_of(credential: Credential | None) -> str | None:
    """The token a credential sends as ``Authorization: Bearer``."""
    if credential is None or credential.secret is None:
        return None
    if credential.auth["type"] == "static_bearer":
        return credential.secret.get("token")
    return credential.secret.get("access_token")


async def _refresh(vaults: Vaults, credential: Credential, server: str) -> str:
    outcome = await refresh_access_token(credential)
    if outcome.status != "succeeded" or outcome.access_token is None:
        detail = f"HTTP {outcome.http_status}" if outcome.http_status else outcome.status.replace("_", " ")
        raise MCPFailure(
            "mcp_authentication_failed_error", f"refreshing the OAuth token for MCP server {server!r} failed ({detail})"
        )
    await vaults.store_refreshed(credential.id, outcome.access_token, outcome.expires_at, outcome.refresh_token)
    return outcome.access_token


async def connect(
    agent: JSON, vaults: Vaults | None, credentials: list[Credential]
) -> tuple[dict[str, MCPConnection], list[tuple[str, MCPFailure]]]:
    """Open every MCP server the agent has a toolset for; the connections, and the servers that failed.

    Connections are opened one after another in the calling task: the MCP client's task groups must
    be closed by the task that opened them (the run's).
    """
    wanted = {tool["mcp_server_name"] for tool in agent.get("tools", []) if tool["type"] == "mcp_toolset"}
    servers = [server for server in agent.get("mcp_servers", []) if server["name"] in wanted]
    if not servers:
        return {}, []
    connected: dict[str, MCPConnection] = {}
    failed: list[tuple[str, MCPFailure]] = []
    for server in servers:
        name, url = server["name"], server["url"]
        credential = match_mcp(credentials, url)
        try:
            connected[name] = await _open(vaults, name, url, credential)
        except MCPFailure as failure:
            failed.append((name, failure))
    return connected, failed


async def _open(vaults: Vaults | None, name: str, url: str, credential: Credential | None) -> MCPConnection:
    if credential is not None and credential.secret is None:
        raise MCPFailure(
            "mcp_authentication_failed_error",
            f"the credential {credential.id} for MCP server {name!r} cannot be opened with this server's key",
        )
    refreshable = (
        vaults is not None
        and credential is not None
        and credential.auth["type"] == "mcp_oauth"
        and credential.auth.get("refresh") is not None
    )
    token = bearer_of(credential)
    expires = credential.auth.get("expires_at") if credential is not None else None
    if refreshable and expires is not None and expires <= now_us() + EXPIRY_MARGIN_US:
        token = await _refresh(vaults, credential, name)  # type: ignore[arg-type]
    connection = MCPConnection(name, url, token)
    try:
        await connection.open()
    except MCPFailure as failure:
        if failure.kind != "mcp_authentication_failed_error" or not refreshable:
            raise
        connection = MCPConnection(name, url, await _refresh(vaults, credential, name))  # type: ignore[arg-type]
        await connection.open()
    return connection


def _http_response(status: int | None, content_type: str = "", body: str = "") -> JSON | None:
    if status is None:
        return None
    limit = 4096
    truncated = len(body) > limit
    return {"status_code": status, "content_type": content_type, "body": body[:limit], "body_truncated": truncated}


async def validate(vaults: Vaults, workspace_id: str, vault_id: str, credential_id: str) -> JSON:
    """``mcp_oauth_validate``: probe the server with the access token; on refusal, try a refresh (and keep it).

    ``valid``: the server took the token (perhaps a refreshed one). ``invalid``: it refused it and no
    refresh helped; the user must authorise again. ``unknown``: the server or token endpoint could not
    be reached, so nothing is known.
    """
    credential = await vaults.credential_with_secret(workspace_id, vault_id, credential_id)
    if credential.auth["type"] != "mcp_oauth":
        kind = credential.auth["type"]
        raise InvalidRequest(f"credential {credential_id} is {kind}; only mcp_oauth credentials can be validated")
    if credential.secret is None:
        raise InvalidRequest(f"credential {credential_id} is archived or its secret cannot be opened")
    has_refresh = bool(credential.auth.get("refresh")) and bool(credential.secret.get("refresh_token"))
    result: JSON = {
        "type": "vault_credential_validation",
        "credential_id": credential_id,
        "vault_id": vault_id,
        "has_refresh_token": has_refresh,
        "mcp_probe": None,
        "refresh": None,
    }
    status, probe = await _probe(credential.auth["mcp_server_url"], bearer_of(credential))
    if status == "refused":
        result["mcp_probe"] = probe
        outcome = await refresh_access_token(credential)
        result["refresh"] = {
            "status": outcome.status,
            "http_response": _http_response(outcome.http_status, outcome.content_type, outcome.body)
            if outcome.status == "failed"
            else None,
        }
        status = "invalid"
        if outcome.status == "succeeded" and outcome.access_token is not None:
            await vaults.store_refreshed(credential_id, outcome.access_token, outcome.expires_at, outcome.refresh_token)
            status, probe = await _probe(credential.auth["mcp_server_url"], outcome.access_token)
            result["mcp_probe"] = None if status == "valid" else probe
            status = "invalid" if status == "refused" else status
        elif outcome.status == "connect_error":
            status = "unknown"
    elif status == "unreachable":
        result["mcp_probe"] = probe
        status = "unknown"
    result["status"] = status
    result["validated_at"] = ts(now_us())
    return result


async def _probe(url: str, token: str | None) -> tuple[str, JSON]:
    """Connect and list tools: ``valid``, ``refused`` (401/403) or ``unreachable``; and the probe's detail."""
    connection = MCPConnection("probe", url, token)
    try:
        await connection.open()
    except MCPFailure as failure:
        refused = failure.kind == "mcp_authentication_failed_error"
        last = connection.statuses[-1] if connection.statuses else None
        detail = {"method": "tools/list", "http_response": _http_response(last)}
        return ("refused" if refused else "unreachable"), detail
    finally:
        await connection.close()
    return "valid", {"method": "tools/list", "http_response": None}


def secret_injections(
    session_id: str, credentials: list[Credential], network: NetworkPolicy
) -> tuple[tuple[SecretInjection, ...], list[tuple[Credential, str]]]:
    """The session's ``environment_variable`` credentials as sandbox variables (first vault first, by name),
    and the hosts of theirs that the environment's network policy does not allow."""
    found: dict[str, SecretInjection] = {}
    unreachable: list[tuple[Credential, str]] = []
    for credential in credentials:
        auth, secret = credential.auth, credential.secret
        if auth["type"] != "environment_variable" or secret is None or auth["secret_name"] in found:
            continue
        networking = auth["networking"]
        hosts = tuple(networking["allowed_hosts"]) if networking["type"] == "limited" else None
        for host in hosts or ():
            if not host.startswith("*.") and not network.allows(host):
                unreachable.append((credential, host))
        digest = hashlib.sha256(f"{session_id}/{credential.id}".encode()).hexdigest()[:32]
        found[auth["secret_name"]] = SecretInjection(
            name=auth["secret_name"],
            placeholder=f"agenthost-placeholder-{digest}",
            value=secret["secret_value"],
            hosts=hosts,
            header=auth["injection_location"]["header"],
            body=auth["injection_location"]["body"],
        )
    return tuple(found.values()), unreachable
