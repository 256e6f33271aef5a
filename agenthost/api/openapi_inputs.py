"""What the served OpenAPI document says of requests beyond what the models declare (layer 4).

The request models check some rules in code rather than in their types: no NUL in stored
text, RFC 3339 timestamps in list filters, opaque page cursors, the metadata limits, and
fields of the official contract this server refuses for now. A client generator or a
schema fuzzer reads only the document, so each rule a schema can say is written into it here.
Rules no schema can check (what is stored, how fields go together, the finer rules of memory
paths) are said in words, and the fuzzer's configuration lists the operations they concern.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from agenthost.schemas.common import MAX_METADATA_KEY, MAX_METADATA_PAIRS, MAX_METADATA_PATCH, MAX_METADATA_VALUE
from agenthost.schemas.environments import UNSUPPORTED_MANAGERS
from agenthost.schemas.events import DELTA_TYPES, EVENT_TYPES, MAX_DELTA_TYPES
from agenthost.schemas.resources import FileResourceParam, ResourceParam
from agenthost.schemas.tools import ANTHROPIC_SKILLS

NO_NUL = "^[^\\u0000]*$"
"""Both databases refuse NUL in text; JSON strings, object keys, query values and headers may not hold it."""

CURSOR = {
    "type": "string",
    "pattern": "^page_[A-Za-z0-9_-]+$",
    "description": "An opaque cursor: the `next_page` (or `prev_page`) of an earlier page of the same list",
}
TIMESTAMP = {"type": "string", "format": "date-time", "description": "An RFC 3339 timestamp"}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "64 lowercase hexadecimal characters"}

QUERY_FORMATS: dict[str, dict[str, Any]] = {
    "path_prefix": {"type": "string", "pattern": "^/([^\\u0000]*/)?$", "description": "`/`, or a path ending in `/`"},
    "types[]": {"type": "array", "items": {"type": "string", "enum": sorted(EVENT_TYPES)}},
    "event_deltas[]": {
        "type": "array",
        "maxItems": MAX_DELTA_TYPES,
        "items": {"type": "string", "enum": sorted(DELTA_TYPES)},
        "description": "Live previews to add to the stream: `event_start` / `event_delta` frames, never stored",
    },
    "page": CURSOR,
    "created_at[gt]": TIMESTAMP,
    "created_at[gte]": TIMESTAMP,
    "created_at[lt]": TIMESTAMP,
    "created_at[lte]": TIMESTAMP,
    "expected_content_sha256": SHA256,
}

NOT_YET = "Not supported by this server yet: any other value is refused with a 400 naming the field"

# Parts of the official contract that this server refuses (400, naming the field) until it
# implements them: a field that only takes its empty form, a field not taken at all (None),
# and union members that no request may use.
REFUSED_FIELDS: dict[tuple[str, str], dict[str, Any] | None] = {
    ("AgentCreate", "multiagent"): {"type": "null"},
    ("AgentUpdate", "multiagent"): {"type": "null"},
    ("SessionCreate", "budget"): {"type": "null"},
    ("SessionUpdate", "budget"): {"type": "null"},
    ("SessionUpdate", "vault_ids"): None,
    **{
        ("Packages", manager): {"anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}]}
        for manager in UNSUPPORTED_MANAGERS
    },
    ("EnvironmentCreate", "scope"): {"anyOf": [{"type": "string", "enum": ["organization"]}, {"type": "null"}]},
    ("EnvironmentUpdate", "scope"): {"anyOf": [{"type": "string", "enum": ["organization"]}, {"type": "null"}]},
}
REFUSED_COMPONENTS = {
    "DefineOutcome": NOT_YET,
    "FileSource": NOT_YET,
    "UserLocation": NOT_YET,
    "RedactedBlock": "Clients cannot send redacted blocks",
}

URL = {
    "type": "string",
    "maxLength": 2048,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@:\\s\\[\\]\\u0000]+(:[0-9]{1,4})?([/?#][^\\u0000]*)?$",
    "description": "An http or https URL",
}

# Rules of single fields that the models check in code.
FIELD_RULES: dict[tuple[str, str], dict[str, Any]] = {
    # An update may rename, never clear, a name.
    ("EnvironmentUpdate", "name"): {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NO_NUL},
    ("MemoryStoreUpdate", "name"): {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
    },
    ("MemoryStoreCreate", "name"): {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        "description": "1-255 characters, no control characters",
    },
    ("AnthropicSkill", "skill_id"): {"type": "string", "enum": sorted(ANTHROPIC_SKILLS)},
    ("StaticBearer", "mcp_server_url"): URL,
    ("MCPOAuth", "mcp_server_url"): URL,
    ("EnvironmentVariable", "secret_name"): {
        "type": "string",
        "maxLength": 255,
        "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
        "description": "An environment variable name, not one the sandbox sets itself",
    },
    ("InputSchema", "properties"): {
        "anyOf": [{"type": "object", "propertyNames": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"}}, {"type": "null"}]
    },
    ("SessionCreate", "vault_ids"): {
        "type": "array",
        "maxItems": 100,
        "uniqueItems": True,
        "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_NUL},
    },
    ("TextBlock", "text"): {
        "type": "string",
        "pattern": "^[^\\u0000]*[^\\u0000\\s][^\\u0000]*$",
        "description": "Must contain non-whitespace text",
    },
}

# Bodies and fields the routes take as free JSON and validate in code, with the models that code applies.
SHAPED_FIELDS: dict[tuple[str, str], Any] = {
    ("SessionCreate", "resources"): Annotated[
        list[Annotated[ResourceParam, Field(discriminator="type")]], Field(max_length=1000)
    ],
}
SHAPED_BODIES: dict[tuple[str, str], Any] = {("post", "/v1/sessions/{session_id}/resources"): FileResourceParam}

# Strings stored as bytes, where NUL is allowed.
BYTES_FIELDS = {("MemoryCreate", "content"), ("MemoryUpdate", "content")}

METADATA_KEYS = {"minLength": 1, "maxLength": MAX_METADATA_KEY, "pattern": NO_NUL}


def describe_inputs(doc: dict[str, Any]) -> None:
    """Write the rules above into ``doc``'s parameters and request-body schemas, in place."""
    schemas = doc["components"]["schemas"]
    for name, reason in REFUSED_COMPONENTS.items():
        schemas[name] = {"not": {}, "description": reason}
    for (owner, field), rule in FIELD_RULES.items():
        schemas[owner]["properties"][field] = rule
    for (owner, field), shape in SHAPED_FIELDS.items():
        schemas[owner]["properties"][field] = _schema_of(shape, schemas)
    for (method, path), shape in SHAPED_BODIES.items():
        body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]
        body["schema"] = _schema_of(shape, schemas)
    for operations in doc["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                _describe_parameter(parameter)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                if "schema" in media:
                    _forbid_nul(media["schema"], schemas, set(), owner=None)


def _schema_of(shape: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a model or type, its definitions among the components."""
    found = TypeAdapter(shape).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(found.pop("$defs", {}))
    if isinstance(shape, type):
        schemas[shape.__name__] = found
        return {"$ref": f"#/components/schemas/{shape.__name__}"}
    return found


def _describe_parameter(parameter: dict[str, Any]) -> None:
    name = parameter["name"]
    if name in QUERY_FORMATS:
        parameter["schema"] = dict(QUERY_FORMATS[name])
    elif parameter["in"] in ("query", "header"):
        _forbid_nul(parameter["schema"], {}, set(), owner=None)


def _forbid_nul(node: Any, schemas: dict[str, Any], seen: set[str], owner: str | None) -> None:
    """Walk a schema (following references once each): every plain string refuses NUL."""
    if isinstance(node, list):
        for item in node:
            _forbid_nul(item, schemas, seen, owner)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name not in seen and name in schemas:
            seen.add(name)
            _forbid_nul(schemas[name], schemas, seen, owner=name)
        return
    if node.get("type") == "string" and not {"pattern", "format", "enum", "const"} & node.keys():
        node["pattern"] = NO_NUL
    properties = node.get("properties")
    if isinstance(properties, dict):
        for field in list(properties):
            if (owner, field) in REFUSED_FIELDS:
                refused = REFUSED_FIELDS[(owner, field)]
                if refused is None:
                    del properties[field]
                else:
                    properties[field] = {**refused, "description": NOT_YET}
            elif (owner, field) in BYTES_FIELDS:
                continue
            elif field == "metadata":
                _describe_metadata(properties[field])
            else:
                _forbid_nul(properties[field], schemas, seen, owner)
    for key in ("items", "anyOf", "oneOf", "allOf"):
        if key in node:
            _forbid_nul(node[key], schemas, seen, owner)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) or extra is True:
        node.setdefault("propertyNames", {"pattern": NO_NUL})
        if isinstance(extra, dict):
            _forbid_nul(extra, schemas, seen, owner)


def _describe_metadata(node: dict[str, Any]) -> None:
    """Metadata: at most 16 pairs, keys of 1-64 characters, values of at most 512 (null deletes, in updates)."""
    for variant in node.get("anyOf", [node]):
        if variant.get("type") != "object":
            continue
        values = variant.get("additionalProperties", {})
        kinds = values.get("anyOf", [values])
        patch = any(kind.get("type") == "null" for kind in kinds)  # null deletes a key: an update's patch
        variant["maxProperties"] = MAX_METADATA_PATCH if patch else MAX_METADATA_PAIRS
        variant["propertyNames"] = dict(METADATA_KEYS)
        for value in kinds:
            if value.get("type") == "string":
                value.update(maxLength=MAX_METADATA_VALUE, pattern=NO_NUL)
