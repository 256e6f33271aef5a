"""/v1/vaults and their credentials (layer 4)."""

from __future__ import annotations

from fastapi import APIRouter, Request

import agenthost.engine.commands as commands
from agenthost.api.bodies import CheckedRoute
from agenthost.api.deps import Workspace, store
from agenthost.api.pagination import limit_param, page_body, page_request
from agenthost.api.responses import JSONBytes, json_response
from agenthost.schemas.vaults import CredentialCreate, CredentialUpdate, VaultCreate, VaultUpdate

router = APIRouter(prefix="/v1/vaults", tags=["vaults"], route_class=CheckedRoute)


@router.post("")
async def create_vault(request: Request, body: VaultCreate, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).vaults.create(workspace_id, body.display_name, body.metadata))


@router.get("")
async def list_vaults(
    request: Request,
    workspace_id: Workspace,
    include_archived: bool = False,
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    result = await store(request).vaults.list(
        workspace_id, page_request("vaults", page, limit, "desc"), include_archived=include_archived
    )
    return json_response(page_body("vaults", result, "desc"))


@router.get("/{vault_id}")
async def retrieve_vault(request: Request, vault_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).vaults.get(workspace_id, vault_id))


@router.post("/{vault_id}")
async def update_vault(request: Request, vault_id: str, body: VaultUpdate, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).vaults.update(workspace_id, vault_id, body.display_name, body.metadata))


@router.post("/{vault_id}/archive")
async def archive_vault(request: Request, vault_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).vaults.archive(workspace_id, vault_id))


@router.delete("/{vault_id}")
async def delete_vault(request: Request, vault_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).vaults.delete(workspace_id, vault_id)
    return json_response({"id": vault_id, "type": "vault_deleted"})


@router.post("/{vault_id}/credentials")
async def create_credential(
    request: Request, vault_id: str, body: CredentialCreate, workspace_id: Workspace
) -> JSONBytes:
    return json_response(await store(request).vaults.create_credential(workspace_id, vault_id, body))


@router.get("/{vault_id}/credentials")
async def list_credentials(
    request: Request,
    vault_id: str,
    workspace_id: Workspace,
    include_archived: bool = False,
    limit: int = limit_param(),
    page: str | None = None,
) -> JSONBytes:
    listing = f"credentials:{vault_id}"
    result = await store(request).vaults.list_credentials(
        workspace_id, vault_id, page_request(listing, page, limit, "desc"), include_archived=include_archived
    )
    return json_response(page_body(listing, result, "desc"))


@router.get("/{vault_id}/credentials/{credential_id}")
async def retrieve_credential(
    request: Request, vault_id: str, credential_id: str, workspace_id: Workspace
) -> JSONBytes:
    return json_response(await store(request).vaults.get_credential(workspace_id, vault_id, credential_id))


@router.post("/{vault_id}/credentials/{credential_id}")
async def update_credential(
    request: Request, vault_id: str, credential_id: str, body: CredentialUpdate, workspace_id: Workspace
) -> JSONBytes:
    return json_response(await store(request).vaults.update_credential(workspace_id, vault_id, credential_id, body))


@router.post("/{vault_id}/credentials/{credential_id}/archive")
async def archive_credential(request: Request, vault_id: str, credential_id: str, workspace_id: Workspace) -> JSONBytes:
    return json_response(await store(request).vaults.archive_credential(workspace_id, vault_id, credential_id))


@router.delete("/{vault_id}/credentials/{credential_id}")
async def delete_credential(request: Request, vault_id: str, credential_id: str, workspace_id: Workspace) -> JSONBytes:
    await store(request).vaults.delete_credential(workspace_id, vault_id, credential_id)
    return json_response({"id": credential_id, "type": "vault_credential_deleted"})


@router.post("/{vault_id}/credentials/{credential_id}/mcp_oauth_validate")
async def validate_credential(
    request: Request, vault_id: str, credential_id: str, workspace_id: Workspace
) -> JSONBytes:
    return json_response(await commands.validate_credential(store(request), workspace_id, vault_id, credential_id))
