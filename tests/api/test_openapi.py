"""The served OpenAPI document says what the server does: its key scheme, its errors, streams, downloads, uploads."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.conftest import LiveServer


@pytest.fixture
def document(server: LiveServer) -> dict[str, Any]:
    response = httpx2.get(f"{server.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_the_api_key_scheme_is_declared_and_required_under_v1(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert schemes["Bearer"] == {"type": "http", "scheme": "bearer"}
    assert document["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_every_operation_documents_the_error_envelope_and_never_422(
    document: dict[str, Any], raw: httpx2.Client
) -> None:
    operations = _operations(document)
    assert len(operations) > 50
    for path, method, operation in operations:
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        for status in ("400", "401", "404", "409", "413", "429", "503") if path.startswith("/v1/") else ("503",):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    # The documented envelope is the one the server sends.
    envelope = raw.post("/v1/agents", json={"name": "no model"}).json()
    error_schema = document["components"]["schemas"]["Error"]
    assert set(error_schema["required"]) <= set(envelope)
    assert set(error_schema["properties"]["error"]["required"]) <= set(envelope["error"])


def test_streams_downloads_and_uploads_have_their_real_media_types(document: dict[str, Any]) -> None:
    paths = document["paths"]
    stream = paths["/v1/sessions/{session_id}/events/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    download = paths["/v1/files/{file_id}/content"]["get"]["responses"]["200"]["content"]
    assert download == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    skill = paths["/v1/skills/{skill_id}/versions/{version}/content"]["get"]["responses"]["200"]["content"]
    assert list(skill) == ["application/zip"]
    for path, part in [("/v1/files", "file"), ("/v1/skills", "files[]"), ("/v1/skills/{skill_id}/versions", "files[]")]:
        body = paths[path]["post"]["requestBody"]
        assert body["required"] is True
        schema = body["content"]["multipart/form-data"]["schema"]
        assert part in schema["required"], path


def test_creates_link_to_the_operations_on_what_they_made(document: dict[str, Any]) -> None:
    paths = document["paths"]
    links = paths["/v1/sessions"]["post"]["responses"]["200"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert paths["/v1/sessions/{session_id}"]["get"]["operationId"] in targets
    assert paths["/v1/sessions/{session_id}/events"]["post"]["operationId"] in targets
    assert all(link["parameters"] == {"session_id": "$response.body#/id"} for link in links.values())
    nested = paths["/v1/vaults/{vault_id}/credentials"]["post"]["responses"]["200"]["links"]
    assert all(
        link["parameters"] == {"vault_id": "$request.path.vault_id", "credential_id": "$response.body#/id"}
        for link in nested.values()
    )


def test_rules_checked_in_code_are_written_into_the_document(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    title = schemas["SessionCreate"]["properties"]["title"]["anyOf"][0]
    assert title["pattern"] == "^[^\\u0000]*$" and title["maxLength"] == 1024
    metadata = schemas["SessionCreate"]["properties"]["metadata"]
    assert metadata["maxProperties"] == 16 and metadata["propertyNames"]["maxLength"] == 64
    assert "vault_ids" not in schemas["SessionUpdate"]["properties"]  # refused: changing a session's vaults
    assert schemas["DefineOutcome"]["not"] == {}  # refused until outcomes are served
    listing = {p["name"]: p["schema"] for p in document["paths"]["/v1/agents"]["get"]["parameters"]}
    assert listing["created_at[gte]"]["format"] == "date-time"
    assert listing["page"]["pattern"].startswith("^page_")
