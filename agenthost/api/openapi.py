"""The served OpenAPI document (layer 4): FastAPI's, completed with what the routes cannot say themselves.

FastAPI describes the paths and the JSON request bodies. This adds each answer's schema (the
official SDK's own models: the wire contract the server is tested against), the API key
security scheme, the error envelope under every status the server answers with (it never
answers 422: a request that fails validation is a 400), the event stream as
``text/event-stream``, downloads as binary bodies, and uploads as multipart bodies.
"""

from __future__ import annotations

from typing import Any

from anthropic.types import beta as sdk
from anthropic.types.beta import environments as sdk_work
from anthropic.types.beta import memory_stores as sdk_memory
from anthropic.types.beta import sessions as sdk_sessions
from anthropic.types.beta import skills as sdk_skills
from anthropic.types.beta import vaults as sdk_vaults
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from agenthost.api.files import MAX_EXPIRY, MIN_EXPIRY
from agenthost.api.openapi_inputs import describe_inputs
from agenthost.api.openapi_links import add_links
from agenthost.schemas.skills import MAX_SKILL_FILES

ERROR_STATUSES = {
    "400": "Invalid request: the message names the field",
    "401": "Missing, unknown or revoked API key",
    "403": "The key may not do this",
    "404": "Unknown id, or one of another workspace",
    "408": "The request body stalled",
    "409": "Conflict (a name taken, a resource in use or archived)",
    "412": "A precondition failed (a stale version or content hash)",
    "413": "The request body is over its limit",
    "429": "Too many event streams for this key (see `retry-after`)",
    "503": "The database is unavailable for now (see `retry-after`)",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["type", "error", "request_id"],
    "properties": {
        "type": {"type": "string", "enum": ["error"]},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            "additionalProperties": True,
        },
        "request_id": {"type": "string"},
    },
}

BINARY = {"type": "string", "format": "binary"}

UPLOADS: dict[str, dict[str, Any]] = {
    "/v1/files": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": BINARY,
            "expires_in_seconds": {"type": "integer", "minimum": MIN_EXPIRY, "maximum": MAX_EXPIRY},
        },
        "additionalProperties": False,
    },
    # A skill's files must include a SKILL.md with its front matter: the content decides, not the form.
    "/v1/skills": {
        "type": "object",
        "required": ["files[]"],
        "properties": {
            "files[]": {"type": "array", "items": BINARY, "minItems": 1, "maxItems": MAX_SKILL_FILES},
            "display_name": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "/v1/skills/{skill_id}/versions": {
        "type": "object",
        "required": ["files[]"],
        "properties": {"files[]": {"type": "array", "items": BINARY, "minItems": 1, "maxItems": MAX_SKILL_FILES}},
        "additionalProperties": False,
    },
}

DOWNLOADS = {
    "/v1/files/{file_id}/content": "application/octet-stream",
    "/v1/skills/{skill_id}/versions/{version}/content": "application/zip",
}

STREAM = "/v1/sessions/{session_id}/events/stream"
# One frame of the stream: `event` is the event's type (or `ping`), `data` its JSON, `id` its id.
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
    },
}

_AGENT, _ENV, _SESSION = sdk.BetaManagedAgentsAgent, sdk.BetaEnvironment, sdk.BetaManagedAgentsSession
_RESOURCE, _WORK = sdk_sessions.BetaManagedAgentsSessionResource, sdk_work.BetaSelfHostedWork
_VAULT, _CREDENTIAL = sdk.BetaManagedAgentsVault, sdk_vaults.BetaManagedAgentsCredential
_STORE, _MEMORY = sdk.BetaManagedAgentsMemoryStore, sdk_memory.BetaManagedAgentsMemory
_VERSION, _SKILL = sdk_memory.BetaManagedAgentsMemoryVersion, sdk.BetaSkill

# What each operation answers with on success: a model, or ("page", model) for a cursor page
# ({data, next_page}; the sessions list also has prev_page).
ANSWERS: dict[tuple[str, str], Any] = {
    ("post", "/v1/agents"): _AGENT,
    ("get", "/v1/agents"): ("page", _AGENT),
    ("get", "/v1/agents/{agent_id}"): _AGENT,
    ("post", "/v1/agents/{agent_id}"): _AGENT,
    ("post", "/v1/agents/{agent_id}/archive"): _AGENT,
    ("get", "/v1/agents/{agent_id}/versions"): ("page", _AGENT),
    ("post", "/v1/environments"): _ENV,
    ("get", "/v1/environments"): ("page", _ENV),
    ("get", "/v1/environments/{environment_id}"): _ENV,
    ("post", "/v1/environments/{environment_id}"): _ENV,
    ("delete", "/v1/environments/{environment_id}"): sdk.BetaEnvironmentDeleteResponse,
    ("post", "/v1/environments/{environment_id}/archive"): _ENV,
    ("get", "/v1/environments/{environment_id}/work/poll"): _WORK | None,
    ("get", "/v1/environments/{environment_id}/work/stats"): sdk_work.BetaSelfHostedWorkQueueStats,
    ("get", "/v1/environments/{environment_id}/work"): ("page", _WORK),
    ("get", "/v1/environments/{environment_id}/work/{work_id}"): _WORK,
    ("post", "/v1/environments/{environment_id}/work/{work_id}"): _WORK,
    ("post", "/v1/environments/{environment_id}/work/{work_id}/ack"): _WORK,
    ("post", "/v1/environments/{environment_id}/work/{work_id}/heartbeat"): (
        sdk_work.BetaSelfHostedWorkHeartbeatResponse
    ),
    ("post", "/v1/environments/{environment_id}/work/{work_id}/stop"): _WORK,
    ("post", "/v1/sessions"): _SESSION,
    ("get", "/v1/sessions"): ("bidirectional", _SESSION),
    ("get", "/v1/sessions/{session_id}"): _SESSION,
    ("post", "/v1/sessions/{session_id}"): _SESSION,
    ("delete", "/v1/sessions/{session_id}"): sdk.BetaManagedAgentsDeletedSession,
    ("post", "/v1/sessions/{session_id}/archive"): _SESSION,
    ("get", "/v1/sessions/{session_id}/resources"): ("page", _RESOURCE),
    ("post", "/v1/sessions/{session_id}/resources"): sdk_sessions.BetaManagedAgentsFileResource,
    ("get", "/v1/sessions/{session_id}/resources/{resource_id}"): _RESOURCE,
    ("post", "/v1/sessions/{session_id}/resources/{resource_id}"): _RESOURCE,
    ("delete", "/v1/sessions/{session_id}/resources/{resource_id}"): (
        sdk_sessions.BetaManagedAgentsDeleteSessionResource
    ),
    ("get", "/v1/sessions/{session_id}/events"): ("page", sdk_sessions.BetaManagedAgentsSessionEvent),
    ("post", "/v1/sessions/{session_id}/events"): sdk_sessions.BetaManagedAgentsSendSessionEvents,
    ("post", "/v1/files"): sdk.BetaFileMetadata,
    ("get", "/v1/files"): ("page", sdk.BetaFileMetadata),
    ("get", "/v1/files/{file_id}"): sdk.BetaFileMetadata,
    ("delete", "/v1/files/{file_id}"): sdk.BetaDeletedFile,
    ("post", "/v1/vaults"): _VAULT,
    ("get", "/v1/vaults"): ("page", _VAULT),
    ("get", "/v1/vaults/{vault_id}"): _VAULT,
    ("post", "/v1/vaults/{vault_id}"): _VAULT,
    ("delete", "/v1/vaults/{vault_id}"): sdk.BetaManagedAgentsDeletedVault,
    ("post", "/v1/vaults/{vault_id}/archive"): _VAULT,
    ("post", "/v1/vaults/{vault_id}/credentials"): _CREDENTIAL,
    ("get", "/v1/vaults/{vault_id}/credentials"): ("page", _CREDENTIAL),
    ("get", "/v1/vaults/{vault_id}/credentials/{credential_id}"): _CREDENTIAL,
    ("post", "/v1/vaults/{vault_id}/credentials/{credential_id}"): _CREDENTIAL,
    ("delete", "/v1/vaults/{vault_id}/credentials/{credential_id}"): sdk_vaults.BetaManagedAgentsDeletedCredential,
    ("post", "/v1/vaults/{vault_id}/credentials/{credential_id}/archive"): _CREDENTIAL,
    ("post", "/v1/vaults/{vault_id}/credentials/{credential_id}/mcp_oauth_validate"): (
        sdk_vaults.BetaManagedAgentsCredentialValidation
    ),
    ("post", "/v1/skills"): _SKILL,
    ("get", "/v1/skills"): ("page", _SKILL),
    ("get", "/v1/skills/{skill_id}"): _SKILL,
    ("delete", "/v1/skills/{skill_id}"): sdk.BetaDeletedSkill,
    ("post", "/v1/skills/{skill_id}/versions"): sdk_skills.BetaSkillVersion,
    ("get", "/v1/skills/{skill_id}/versions"): ("page", sdk_skills.BetaSkillVersion),
    ("get", "/v1/skills/{skill_id}/versions/{version}"): sdk_skills.BetaSkillVersion,
    ("delete", "/v1/skills/{skill_id}/versions/{version}"): sdk_skills.BetaDeletedSkillVersion,
    ("post", "/v1/memory_stores"): _STORE,
    ("get", "/v1/memory_stores"): ("page", _STORE),
    ("get", "/v1/memory_stores/{memory_store_id}"): _STORE,
    ("post", "/v1/memory_stores/{memory_store_id}"): _STORE,
    ("delete", "/v1/memory_stores/{memory_store_id}"): sdk.BetaManagedAgentsDeletedMemoryStore,
    ("post", "/v1/memory_stores/{memory_store_id}/archive"): _STORE,
    ("post", "/v1/memory_stores/{memory_store_id}/memories"): _MEMORY,
    ("get", "/v1/memory_stores/{memory_store_id}/memories"): ("page", sdk_memory.BetaManagedAgentsMemoryListItem),
    ("get", "/v1/memory_stores/{memory_store_id}/memories/{memory_id}"): _MEMORY,
    ("post", "/v1/memory_stores/{memory_store_id}/memories/{memory_id}"): _MEMORY,
    ("delete", "/v1/memory_stores/{memory_store_id}/memories/{memory_id}"): sdk_memory.BetaManagedAgentsDeletedMemory,
    ("get", "/v1/memory_stores/{memory_store_id}/memory_versions"): ("page", _VERSION),
    ("get", "/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}"): _VERSION,
    ("post", "/v1/memory_stores/{memory_store_id}/memory_versions/{memory_version_id}/redact"): _VERSION,
    ("get", "/health"): None,  # {"status": "ok"}: below
}

HEALTH = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app``, made once and kept."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "Bearer": {"type": "http", "scheme": "bearer"},
    }
    doc["security"] = [{"ApiKey": []}, {"Bearer": []}]
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            statuses = ERROR_STATUSES if path.startswith("/v1/") else {"503": ERROR_STATUSES["503"]}
            for status, description in statuses.items():
                responses[status] = {"description": description, **error}
            if not path.startswith("/v1/"):
                operation["security"] = []
            if method == "post" and path in UPLOADS:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": UPLOADS[path]}},
                }
            if method == "get" and path in DOWNLOADS:
                responses["200"] = {"description": "The contents", "content": {DOWNLOADS[path]: {"schema": BINARY}}}
            if method == "get" and path == STREAM:
                responses["200"] = {
                    "description": "Server-Sent Events: one frame per event, `ping` frames while idle",
                    "content": {"text/event-stream": {"schema": SSE_EVENT}},
                }
    _answers(doc)
    describe_inputs(doc)
    add_links(doc)
    app.openapi_schema = doc
    return doc


def _answers(doc: dict[str, Any]) -> None:
    """Put each operation's success schema in place, the SDK models' definitions among the components."""
    schemas = doc["components"]["schemas"]
    ref = "#/components/schemas/{model}"
    for (method, path), answer in ANSWERS.items():
        operation = doc["paths"][path][method]
        if answer is None:
            schema: dict[str, Any] = HEALTH
        else:
            kind, model = answer if isinstance(answer, tuple) else ("one", answer)
            found = TypeAdapter(model).json_schema(ref_template=ref, mode="serialization")
            schemas.update(found.pop("$defs", {}))
            if isinstance(model, type):  # a model: one named component; a union stays inline
                schemas[model.__name__] = found
                found = {"$ref": ref.format(model=model.__name__)}
            schema = found
            if kind != "one":
                cursor = {"anyOf": [{"type": "string"}, {"type": "null"}]}
                properties = {"data": {"type": "array", "items": found}, "next_page": cursor}
                if kind == "bidirectional":
                    properties["prev_page"] = cursor
                schema = {"type": "object", "required": ["data"], "properties": properties}
        operation["responses"]["200"] = {
            "description": "Success",
            "content": {"application/json": {"schema": schema}},
        }
    missing = [
        (method, path)
        for path, operations in doc["paths"].items()
        for method in operations
        if (method, path) not in ANSWERS and path not in DOWNLOADS and path != STREAM
    ]
    assert not missing, f"operations without a documented answer: {missing}"
