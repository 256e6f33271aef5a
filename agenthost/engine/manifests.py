"""Small JSON files beside a session's directories that remember what the engine placed there (layer 3).

The uploads, skills, repositories and memory mirrors each keep one, so a later run knows what is
on disk without asking the sandbox. A manifest is replaced whole (written beside, then renamed),
and one that is missing or unreadable reads as empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        loaded = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def write_manifest(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(orjson.dumps(value))
    partial.replace(path)
