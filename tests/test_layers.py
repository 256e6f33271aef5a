"""The import directions of the layers (docs/architecture.md), checked by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "agenthost"

# module prefix -> prefixes it may import from agenthost
ALLOWED: dict[str, tuple[str, ...]] = {
    "agenthost.schemas": ("agenthost.schemas", "agenthost.errors", "agenthost.ids", "agenthost.settings"),
    "agenthost.errors": (),
    "agenthost.ids": (),
    "agenthost.settings": (),
    "agenthost.metrics": ("agenthost.schemas",),
    "agenthost.store": ("agenthost.store", "agenthost.schemas", "agenthost.errors", "agenthost.ids"),
    "agenthost.providers": ("agenthost.providers",),
    "agenthost.sandbox": ("agenthost.sandbox",),
    "agenthost.tools": (
        "agenthost.tools",
        "agenthost.sandbox.base",
        "agenthost.sandbox.rooted",
        "agenthost.sandbox.addresses",
    ),
    "agenthost.engine": (
        "agenthost.engine",
        "agenthost.store",
        "agenthost.schemas",
        "agenthost.errors",
        "agenthost.ids",
        "agenthost.settings",
        "agenthost.metrics",
        "agenthost.providers.base",
        "agenthost.sandbox.base",
        "agenthost.tools",
    ),
    "agenthost.api": (
        "agenthost.api",
        "agenthost.schemas",
        "agenthost.errors",
        "agenthost.ids",
        "agenthost.store.paging",
        "agenthost.store.sql",
        "agenthost.store.notify",
        "agenthost.settings",
        "agenthost.metrics",
        "agenthost.engine.commands",
    ),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n.startswith("agenthost")]


def test_layers_only_import_downwards() -> None:
    problems: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        module = "agenthost." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        rule = next((prefix for prefix in ALLOWED if module.startswith(prefix)), None)
        if rule is None:
            continue  # layer 5 (app, cli, testing) may import anything
        for imported in _imports(path):
            if not imported.startswith(ALLOWED[rule]):
                problems.append(f"{module} imports {imported}")
    assert problems == []


def test_web_and_db_libraries_stay_in_their_layers() -> None:
    for path in (PACKAGE / "schemas").rglob("*.py"):
        source = path.read_text()
        assert "fastapi" not in source and "sqlalchemy" not in source, path
    for path in (PACKAGE / "store").rglob("*.py"):
        assert "fastapi" not in path.read_text() and "starlette" not in path.read_text(), path
