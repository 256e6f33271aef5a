"""SDK paths agenthost does not serve, answered on purpose instead of with "no route" (layer 4).

Two kinds: resources that have no meaning on a self-hosted server (they manage the hosted
service's own network, users and organisation), and resources of the contract that this server
does not implement yet. Both are a 400 ``invalid_request_error`` that says which and why, so a
program learns at its first call what it cannot do here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from agenthost.api.bodies import CheckedRoute
from agenthost.errors import InvalidRequest

router = APIRouter(tags=["unserved"], route_class=CheckedRoute, include_in_schema=False)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

MEANINGLESS = {
    "/v1/tunnels": "tunnels connect the hosted service to private networks; a self-hosted server already runs in yours",
    "/v1/user_profiles": "user profiles belong to the hosted service's accounts; here every API key speaks for a "
    "workspace (`agenthost keys create --workspace NAME`)",
    "/v1/organizations": "the organisation admin API manages the hosted service's organisation; manage this server's "
    "workspaces and keys with `agenthost keys`",
}

NOT_YET = {
    "/v1/sessions/{session_id}/threads": "session threads (multi-agent sessions)",
    "/v1/deployments": "deployments (scheduled sessions)",
    "/v1/deployment_runs": "deployment runs",
    "/v1/dreams": "dreams",
}


def _refuse_under(prefix: str, message: str) -> None:
    """Answer every method on ``prefix`` and every path below it with a 400 saying ``message``."""

    async def refuse(request: Request) -> None:
        raise InvalidRequest(message)

    for path in (prefix, prefix + "/{rest:path}"):
        router.add_api_route(path, refuse, methods=METHODS)


for prefix, why in MEANINGLESS.items():
    _refuse_under(prefix, f"{prefix.removeprefix('/v1/')} are not served by a self-hosted agenthost server: {why}")
for prefix, what in NOT_YET.items():
    _refuse_under(prefix, f"{what}: not implemented yet by this agenthost server")
