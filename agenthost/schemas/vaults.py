"""Vaults and credentials: request bodies, the stored public and secret parts, wire objects (layer 0).

A credential is stored as two parts: its *public* auth (what the API returns) and its *secret*
fields (tokens, client secrets, the variable's value), which are sealed with the server key and
never returned.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, StrictBool, StringConstraints

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import JSON, Body, Text, now_us, ts

MAX_CREDENTIALS_PER_VAULT = 20
MAX_ALLOWED_HOSTS = 16
RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "LANG", "TERM", "SHELL", "PWD", "NO_PROXY", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
     "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "PIP_INDEX_URL", "PIP_TRUSTED_HOST", "NPM_CONFIG_REGISTRY", "LD_PRELOAD",
     "LD_LIBRARY_PATH"}
)  # fmt: skip
"""Variables the sandbox sets itself (or that change how every program runs): no credential may take them."""

DisplayName = Annotated[Text, StringConstraints(min_length=1, max_length=255)]
Secret = Annotated[Text, StringConstraints(min_length=1, max_length=16_384)]
Url = Annotated[Text, StringConstraints(min_length=1, max_length=2048)]


class VaultCreate(Body):
    display_name: DisplayName
    metadata: dict[str, str] = Field(default_factory=dict)


class VaultUpdate(Body):
    display_name: DisplayName | None = None
    metadata: dict[str, str | None] | None = None


class AuthNone(Body):
    type: Literal["none"]


class AuthBasic(Body):
    type: Literal["client_secret_basic"]
    client_secret: Secret


class AuthPost(Body):
    type: Literal["client_secret_post"]
    client_secret: Secret


class Refresh(Body):
    client_id: Annotated[Text, StringConstraints(min_length=1, max_length=1024)]
    refresh_token: Secret
    token_endpoint: Url
    token_endpoint_auth: Annotated[AuthNone | AuthBasic | AuthPost, Field(discriminator="type")]
    resource: Url | None = None
    scope: Annotated[Text, StringConstraints(max_length=4096)] | None = None


class MCPOAuth(Body):
    type: Literal["mcp_oauth"]
    mcp_server_url: Url
    access_token: Secret
    expires_at: datetime | None = None
    refresh: Refresh | None = None


class StaticBearer(Body):
    type: Literal["static_bearer"]
    mcp_server_url: Url
    token: Secret


class Unrestricted(Body):
    type: Literal["unrestricted"]


class Limited(Body):
    type: Literal["limited"]
    allowed_hosts: list[Annotated[Text, StringConstraints(min_length=1, max_length=253)]]


Networking = Annotated[Unrestricted | Limited, Field(discriminator="type")]


class Injection(Body):
    body: StrictBool | None = None
    header: StrictBool | None = None


class EnvironmentVariable(Body):
    type: Literal["environment_variable"]
    secret_name: Annotated[Text, StringConstraints(min_length=1, max_length=255)]
    secret_value: Secret
    networking: Networking
    injection_location: Injection | None = None


class CredentialCreate(Body):
    auth: Annotated[MCPOAuth | StaticBearer | EnvironmentVariable, Field(discriminator="type")]
    display_name: Annotated[Text, StringConstraints(max_length=255)] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class AuthBasicUpdate(Body):
    type: Literal["client_secret_basic"]
    client_secret: Secret | None = None


class AuthPostUpdate(Body):
    type: Literal["client_secret_post"]
    client_secret: Secret | None = None


class RefreshUpdate(Body):
    refresh_token: Secret | None = None
    scope: Annotated[Text, StringConstraints(max_length=4096)] | None = None
    token_endpoint_auth: Annotated[AuthBasicUpdate | AuthPostUpdate, Field(discriminator="type")] | None = None


class MCPOAuthUpdate(Body):
    type: Literal["mcp_oauth"]
    access_token: Secret | None = None
    expires_at: datetime | None = None
    refresh: RefreshUpdate | None = None


class StaticBearerUpdate(Body):
    type: Literal["static_bearer"]
    token: Secret | None = None


class EnvironmentVariableUpdate(Body):
    type: Literal["environment_variable"]
    secret_value: Secret | None = None
    networking: Networking | None = None
    injection_location: Injection | None = None


AuthUpdate = Annotated[MCPOAuthUpdate | StaticBearerUpdate | EnvironmentVariableUpdate, Field(discriminator="type")]


class CredentialUpdate(Body):
    auth: AuthUpdate | None = None
    display_name: Annotated[Text, StringConstraints(max_length=255)] | None = None
    metadata: dict[str, str | None] | None = None


# -- rules ---------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def normalize_url(url: str, field: str = "auth.mcp_server_url") -> str:
    """An MCP server URL as credentials match it: lowercase scheme and host, no default port or trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{field}: must be an http or https URL")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"{field}: has an invalid port") from None
    netloc = host if port is None or port == {"http": 80, "https": 443}[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def _check_future(moment: datetime | None, field: str) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{field}: must carry a time zone")
    micros = int(moment.timestamp() * 1_000_000)
    if micros <= now_us():
        raise InvalidRequest(f"{field}: must be in the future")
    return micros


def _networking(param: Unrestricted | Limited) -> JSON:
    if isinstance(param, Unrestricted):
        return {"type": "unrestricted"}
    hosts = [host.lower() for host in param.allowed_hosts]
    if not hosts or len(hosts) > MAX_ALLOWED_HOSTS:
        raise InvalidRequest(f"auth.networking.allowed_hosts: give 1 to {MAX_ALLOWED_HOSTS} hosts")
    for index, host in enumerate(hosts):
        bare = host.removeprefix("*.")
        try:
            ipaddress.IPv4Address(bare)
            ok = not host.startswith("*.")
        except ValueError:
            ok = _HOSTNAME.fullmatch(bare) is not None
        if not ok:
            raise InvalidRequest(
                f"auth.networking.allowed_hosts[{index}]: {host!r} is not a hostname, an IPv4 address or a *.wildcard"
            )
    return {"type": "limited", "allowed_hosts": hosts}


def _injection(param: Injection | None, current: JSON | None, given: bool) -> JSON:
    """Create with none: both; a partial object: the rest false; update merges per field."""
    if param is None:
        if given:
            raise InvalidRequest("auth.injection_location: cannot be null")
        return dict(current) if current is not None else {"body": True, "header": True}
    if current is None:
        result = {"body": bool(param.body), "header": bool(param.header)}
    else:
        result = dict(current)
        for key in ("body", "header"):
            if param.given(key):
                value = getattr(param, key)
                if value is None:
                    raise InvalidRequest(f"auth.injection_location.{key}: cannot be null")
                result[key] = value
    if not result["body"] and not result["header"]:
        raise InvalidRequest("auth.injection_location: at least one of body and header must be true")
    return result


def credential_parts(auth: MCPOAuth | StaticBearer | EnvironmentVariable) -> tuple[JSON, JSON, str]:
    """The public auth, the secret fields and the match key of a new credential."""
    if isinstance(auth, StaticBearer):
        url = normalize_url(auth.mcp_server_url)
        return {"type": "static_bearer", "mcp_server_url": auth.mcp_server_url}, {"token": auth.token}, f"mcp:{url}"
    if isinstance(auth, MCPOAuth):
        url = normalize_url(auth.mcp_server_url)
        public: JSON = {
            "type": "mcp_oauth",
            "mcp_server_url": auth.mcp_server_url,
            "expires_at": _check_future(auth.expires_at, "auth.expires_at"),
            "refresh": None,
        }
        secret: JSON = {"access_token": auth.access_token}
        if auth.refresh is not None:
            refresh = auth.refresh
            normalize_url(refresh.token_endpoint, "auth.refresh.token_endpoint")
            public["refresh"] = {
                "client_id": refresh.client_id,
                "token_endpoint": refresh.token_endpoint,
                "token_endpoint_auth": {"type": refresh.token_endpoint_auth.type},
                "resource": refresh.resource,
                "scope": refresh.scope,
            }
            secret["refresh_token"] = refresh.refresh_token
            if not isinstance(refresh.token_endpoint_auth, AuthNone):
                secret["client_secret"] = refresh.token_endpoint_auth.client_secret
        return public, secret, f"mcp:{url}"
    if not _SECRET_NAME.fullmatch(auth.secret_name):
        raise InvalidRequest("auth.secret_name: must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if auth.secret_name.upper() in RESERVED_NAMES or auth.secret_name.upper().endswith("_PROXY"):
        raise InvalidRequest(f"auth.secret_name: {auth.secret_name} is set by the sandbox itself; choose another name")
    public = {
        "type": "environment_variable",
        "secret_name": auth.secret_name,
        "injection_location": _injection(auth.injection_location, None, auth.given("injection_location")),
        "networking": _networking(auth.networking),
    }
    return public, {"secret_value": auth.secret_value}, f"env:{auth.secret_name}"


def update_parts(
    param: MCPOAuthUpdate | StaticBearerUpdate | EnvironmentVariableUpdate, public: JSON, secret: JSON
) -> tuple[JSON, JSON]:
    """The public auth and secret fields after an update; the type and the keys never change."""
    if param.type != public["type"]:
        raise InvalidRequest(
            f"auth.type: this credential is {public['type']}; the type cannot change (archive it and create another)"
        )
    public, secret = dict(public), dict(secret)
    if isinstance(param, StaticBearerUpdate):
        if param.token is not None:
            secret["token"] = param.token
    elif isinstance(param, MCPOAuthUpdate):
        if param.access_token is not None:
            secret["access_token"] = param.access_token
        if param.given("expires_at"):
            public["expires_at"] = _check_future(param.expires_at, "auth.expires_at")
        if param.refresh is not None:
            if public.get("refresh") is None:
                raise InvalidRequest("auth.refresh: this credential has no refresh settings; create another with them")
            refresh = dict(public["refresh"])
            if param.refresh.refresh_token is not None:
                secret["refresh_token"] = param.refresh.refresh_token
            if param.refresh.given("scope"):
                refresh["scope"] = param.refresh.scope or None  # "" clears
            endpoint_auth = param.refresh.token_endpoint_auth
            if endpoint_auth is not None:
                changed = endpoint_auth.type != refresh["token_endpoint_auth"]["type"]
                if changed and endpoint_auth.client_secret is None:
                    raise InvalidRequest("auth.refresh.token_endpoint_auth.client_secret: needed to change the method")
                refresh["token_endpoint_auth"] = {"type": endpoint_auth.type}
                if endpoint_auth.client_secret is not None:
                    secret["client_secret"] = endpoint_auth.client_secret
            public["refresh"] = refresh
    else:
        if param.secret_value is not None:
            secret["secret_value"] = param.secret_value
        if param.given("networking"):
            if param.networking is None:
                raise InvalidRequest("auth.networking: cannot be null")
            public["networking"] = _networking(param.networking)
        if param.given("injection_location"):
            public["injection_location"] = _injection(
                param.injection_location, public["injection_location"], given=True
            )
    return public, secret


# -- wire ----------------------------------------------------------------------------------------


def vault_json(row: Any) -> JSON:
    return {
        "id": row.id,
        "type": "vault",
        "display_name": row.display_name,
        "metadata": row.metadata,
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
        "archived_at": ts(row.archived_at),
    }


def credential_json(row: Any) -> JSON:
    auth = dict(row.auth)
    if auth["type"] == "mcp_oauth":
        auth["expires_at"] = ts(auth["expires_at"])
    return {
        "id": row.id,
        "type": "vault_credential",
        "vault_id": row.vault_id,
        "display_name": row.display_name,
        "auth": auth,
        "metadata": row.metadata,
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
        "archived_at": ts(row.archived_at),
    }
