"""The file tools ``read``, ``write``, ``edit``, ``glob`` and ``grep`` (REFERENCE §2.3 input shapes).

Paths are absolute under ``/workspace`` or relative to it; the sandbox resolves them and
refuses anything that lands outside.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from agenthost.sandbox.base import Sandbox
from agenthost.tools.base import ToolInputError, ToolOutput, optional, require, spill

READ_LIMIT = 256 * 1024
READ_HARD_LIMIT = 16 * 1024 * 1024
GLOB_LIMIT = 200
GREP_LINE_LIMIT = 2_000
GREP_OUTPUT_LIMIT = 100 * 1024

SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    "read": (
        "Read a text file. Lines are numbered from 1; view_range [start, end] limits the lines (end <= 0: to the end).",
        {
            "type": "object",
            "properties": {
                "file_path": {"type": "string"},
                "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            },
            "required": ["file_path"],
        },
    ),
    "write": (
        "Write a file, replacing any existing content; parent directories are created.",
        {
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["file_path", "content"],
        },
    ),
    "edit": (
        "Replace old_string with new_string in a file. old_string must occur exactly once unless replace_all.",
        {
            "type": "object",
            "properties": {
                "file_path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"},
            },
            "required": ["file_path", "old_string", "new_string"],
        },
    ),
    "glob": (
        "Find files matching a glob pattern (** for any depth), newest first.",
        {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
            "required": ["pattern"],
        },
    ),
    "grep": (
        "Search file contents with a regular expression; prints path:line:text for each match.",
        {
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
            "required": ["pattern"],
        },
    ),
}


def _display(sandbox: Sandbox, path: Path) -> str:
    return (
        "/workspace/" + str(path.relative_to(sandbox.workspace.resolve()))
        if path != sandbox.workspace.resolve()
        else "/workspace"
    )


async def read(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    path = sandbox.resolve(require(tool_input, "file_path", str))
    view = tool_input.get("view_range")
    if view is not None and (not isinstance(view, list) or len(view) != 2 or not all(isinstance(v, int) for v in view)):
        raise ToolInputError("`view_range` must be [start, end]")

    def load() -> str:
        if not path.is_file():
            raise ToolInputError(f"{tool_input['file_path']}: no such file")
        size = path.stat().st_size
        if size > READ_HARD_LIMIT:
            raise ToolInputError(f"{tool_input['file_path']}: file is {size} bytes; use bash (head, tail, sed)")
        if size > READ_LIMIT and view is None:
            raise ToolInputError(
                f"{tool_input['file_path']}: file is over {READ_LIMIT} bytes; read part of it with view_range"
            )
        try:
            return path.read_text()
        except UnicodeDecodeError:
            raise ToolInputError(f"{tool_input['file_path']}: not a UTF-8 text file") from None

    text = await asyncio.to_thread(load)
    lines = text.splitlines()
    start, end = (1, len(lines)) if view is None else (max(1, view[0]), len(lines) if view[1] <= 0 else view[1])
    numbered = "\n".join(f"{number:6}\t{lines[number - 1]}" for number in range(start, min(end, len(lines)) + 1))
    return ToolOutput.text(await spill(sandbox, numbered))


async def write(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    path = sandbox.resolve(require(tool_input, "file_path", str))
    content = require(tool_input, "content", str)

    def store() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    await asyncio.to_thread(store)
    return ToolOutput.text(f"Wrote {len(content)} characters to {_display(sandbox, path)}.")


async def edit(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    path = sandbox.resolve(require(tool_input, "file_path", str))
    old = require(tool_input, "old_string", str)
    new = require(tool_input, "new_string", str)
    replace_all = optional(tool_input, "replace_all", bool, False)
    if not old:
        raise ToolInputError("`old_string` must not be empty")

    def change() -> int:
        if not path.is_file():
            raise ToolInputError(f"{tool_input['file_path']}: no such file")
        text = path.read_text()
        count = text.count(old)
        if count == 0:
            raise ToolInputError("`old_string` was not found in the file")
        if count > 1 and not replace_all:
            raise ToolInputError(f"`old_string` occurs {count} times; make it unique or set replace_all")
        path.write_text(text.replace(old, new) if replace_all else text.replace(old, new, 1))
        return count if replace_all else 1

    count = await asyncio.to_thread(change)
    return ToolOutput.text(f"Replaced {count} occurrence(s) in {_display(sandbox, path)}.")


async def glob(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    pattern = require(tool_input, "pattern", str)
    base = sandbox.resolve(optional(tool_input, "path", str, "/workspace"))
    if pattern.startswith("/"):
        raise ToolInputError("`pattern` must be relative to `path`")

    def find() -> list[Path]:
        root = sandbox.workspace.resolve()
        found = [p for p in base.glob(pattern) if p.is_file() and (p.resolve() == root or root in p.resolve().parents)]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:GLOB_LIMIT]

    paths = await asyncio.to_thread(find)
    if not paths:
        return ToolOutput.text("No files matched.")
    return ToolOutput.text("\n".join(_display(sandbox, p.resolve()) for p in paths))


async def grep(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    try:
        regex = re.compile(require(tool_input, "pattern", str))
    except re.error as exc:
        raise ToolInputError(f"`pattern` is not a valid regular expression: {exc}") from None
    base = sandbox.resolve(optional(tool_input, "path", str, "/workspace"))

    def search() -> str:
        root = sandbox.workspace.resolve()
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        lines: list[str] = []
        size = 0
        for file in files:
            resolved = file.resolve()
            if resolved != root and root not in resolved.parents:
                continue
            try:
                text = file.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    entry = f"{_display(sandbox, resolved)}:{number}:{line[:GREP_LINE_LIMIT]}"
                    size += len(entry) + 1
                    if size > GREP_OUTPUT_LIMIT:
                        lines.append("[output truncated]")
                        return "\n".join(lines)
                    lines.append(entry)
        return "\n".join(lines)

    found = await asyncio.to_thread(search)
    return ToolOutput.text(found or "No matches found.")
