"""The served OpenAPI document (layer 4): FastAPI's, completed with what the routes cannot say themselves.

FastAPI describes the paths and the JSON request bodies. This adds the API key security scheme,
the error envelope under every status the server answers with (it never answers 422: a request
that fails validation is a 400), the event stream as ``text/event-stream``, downloads as binary
bodies, and uploads as multipart bodies.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
        "properties": {"file": BINARY, "expires_in_seconds": {"type": "integer"}},
    },
    "/v1/skills": {
        "type": "object",
        "required": ["files[]"],
        "properties": {"files[]": {"type": "array", "items": BINARY}, "display_name": {"type": "string"}},
    },
    "/v1/skills/{skill_id}/versions": {
        "type": "object",
        "required": ["files[]"],
        "properties": {"files[]": {"type": "array", "items": BINARY}},
    },
}

DOWNLOADS = {
    "/v1/files/{file_id}/content": "application/octet-stream",
    "/v1/skills/{skill_id}/versions/{version}/content": "application/zip",
}

STREAM = "/v1/sessions/{session_id}/events/stream"


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
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
    app.openapi_schema = doc
    return doc
