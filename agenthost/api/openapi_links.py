"""OpenAPI links of the served document (layer 4): which answer's id the next request can use.

A create (``POST /v1/agents``) answers with the new resource; its ``id`` fills the path
parameter of every operation under that resource (``/v1/agents/{agent_id}``, ``.../archive``,
``.../versions``), and the create's own path parameters carry over. Client generators and
stateful fuzzers follow these links to reach real resources instead of guessing ids.
"""

from __future__ import annotations

import re
from typing import Any

_PARAM = re.compile(r"\{([^}]+)\}")

# What a create answers with that names the new resource, where it is not ``id``.
KEYS = {"/v1/skills/{skill_id}/versions": "version"}


def add_links(doc: dict[str, Any]) -> None:
    """Link each create's answer to the operations on what it created, in place."""
    paths: dict[str, dict[str, Any]] = doc["paths"]
    for source, operations in paths.items():
        create = operations.get("post")
        if create is None or source.endswith("}") or "200" not in create.get("responses", {}):
            continue
        inherited = _PARAM.findall(source)
        links: dict[str, Any] = {}
        for target, target_operations in paths.items():
            match = re.fullmatch(re.escape(source) + r"/\{([^}]+)\}(/[^{}]*)?", target)
            if match is None:
                continue
            created = match.group(1)
            parameters = {name: f"$request.path.{name}" for name in inherited}
            parameters[created] = f"$response.body#/{KEYS.get(source, 'id')}"
            for method, operation in target_operations.items():
                links[f"{method}_{operation['operationId']}"] = {
                    "operationId": operation["operationId"],
                    "parameters": parameters,
                }
        if links:
            create["responses"]["200"]["links"] = links
