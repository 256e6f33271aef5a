"""The file tools ``read``, ``write``, ``edit``, ``glob`` and ``grep``, with the API's input shapes.

Paths are absolute (under ``/workspace`` or the session mounts) or relative to
``/workspace``. Every file operation goes through the sandbox's ``RootedFiles``, which
resolves paths inside the sandbox's own directories and never follows the agent's
symlinks out of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from agenthost.sandbox.base import Sandbox
from agenthost.sandbox.rooted import WORKSPACE, FileAccessError, RootedFiles, glob_regex
from agenthost.tools.base import ToolInputError, ToolOutput, optional, require, spill

READ_LIMIT = 256 * 1024
READ_HARD_LIMIT = 16 * 1024 * 1024
GLOB_LIMIT = 200
GREP_LINE_LIMIT = 2_000
GREP_OUTPUT_LIMIT = 100 * 1024
GREP_TIMEOUT = 30.0  # seconds a grep may search before it is stopped
T = TypeVar("T")

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


async def _call(function: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.to_thread(function, *args)
    except FileAccessError as exc:
        raise ToolInputError(str(exc)) from None


def _text(data: bytes, path: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ToolInputError(f"{path}: not a UTF-8 text file") from None


async def read(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    path = require(tool_input, "file_path", str)
    view = tool_input.get("view_range")
    if view is not None and (not isinstance(view, list) or len(view) != 2 or not all(isinstance(v, int) for v in view)):
        raise ToolInputError("`view_range` must be [start, end]")
    files = sandbox.files
    size = await _call(files.size, path)
    if size > READ_HARD_LIMIT:
        raise ToolInputError(f"{path}: file is {size} bytes; use bash (head, tail, sed)")
    if size > READ_LIMIT and view is None:
        raise ToolInputError(f"{path}: file is over {READ_LIMIT} bytes; read part of it with view_range")
    text = _text(await _call(files.read_bytes, path, READ_HARD_LIMIT), path)
    lines = text.splitlines()
    start, end = (1, len(lines)) if view is None else (max(1, view[0]), len(lines) if view[1] <= 0 else view[1])
    numbered = "\n".join(f"{number:6}\t{lines[number - 1]}" for number in range(start, min(end, len(lines)) + 1))
    return ToolOutput.text(await spill(sandbox, numbered))


async def write(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    path = require(tool_input, "file_path", str)
    content = require(tool_input, "content", str)
    shown = await _call(sandbox.files.write_bytes, path, content.encode())
    return ToolOutput.text(f"Wrote {len(content)} characters to {shown}.")


async def edit(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    path = require(tool_input, "file_path", str)
    old = require(tool_input, "old_string", str)
    new = require(tool_input, "new_string", str)
    replace_all = optional(tool_input, "replace_all", bool, False)
    if not old:
        raise ToolInputError("`old_string` must not be empty")
    files = sandbox.files
    text = _text(await _call(files.read_bytes, path, READ_HARD_LIMIT), path)
    count = text.count(old)
    if count == 0:
        raise ToolInputError("`old_string` was not found in the file")
    if count > 1 and not replace_all:
        raise ToolInputError(f"`old_string` occurs {count} times; make it unique or set replace_all")
    changed = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    shown = await _call(files.write_bytes, path, changed.encode())
    return ToolOutput.text(f"Replaced {count if replace_all else 1} occurrence(s) in {shown}.")


async def glob(sandbox: Sandbox, tool_input: dict[str, Any]) -> ToolOutput:
    pattern = require(tool_input, "pattern", str)
    if pattern.startswith("/"):
        raise ToolInputError("`pattern` must be relative to `path`")
    base = optional(tool_input, "path", str, WORKSPACE)
    files = sandbox.files
    regex = glob_regex(pattern)

    def find() -> list[tuple[float, str]]:
        prefix = files.locate(base).display.rstrip("/") + "/"
        return [
            (info.st_mtime, shown)
            for shown, info, _fd, _name in files.walk(base)
            if regex.match(shown.removeprefix(prefix))
        ]

    found = sorted(await _call(find), reverse=True)[:GLOB_LIMIT]
    if not found:
        return ToolOutput.text("No files matched.")
    return ToolOutput.text("\n".join(shown for _mtime, shown in found))


async def grep(sandbox: Sandbox, tool_input: dict[str, Any], timeout: float = GREP_TIMEOUT) -> ToolOutput:
    """Search in a separate process: the agent picks the pattern, and a catastrophic one
    (``(x+x+)+y``) would otherwise hold the server's interpreter for as long as it backtracks."""
    pattern = require(tool_input, "pattern", str)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ToolInputError(f"`pattern` is not a valid regular expression: {exc}") from None
    base = optional(tool_input, "path", str, WORKSPACE)
    mounts = [[mount.path, str(mount.host), mount.writable] for mount in sandbox.files.mounts]
    request = json.dumps({"mounts": mounts, "base": base, "pattern": pattern}).encode()
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agenthost.tools.grep_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(worker.communicate(request), timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
        with contextlib.suppress(ProcessLookupError):
            await worker.wait()
        if isinstance(exc, TimeoutError):
            raise ToolInputError(
                f"grep was stopped after {timeout:g} s: simplify the pattern or narrow `path`"
            ) from None
        raise
    if worker.returncode != 0:
        raise ToolInputError(f"grep failed: {err.decode(errors='replace').strip()[-500:]}")
    answer = json.loads(out)
    if "error" in answer:
        raise ToolInputError(answer["error"])
    return ToolOutput.text(answer["text"] or "No matches found.")


def search(files: RootedFiles, base: str, regex: re.Pattern[str]) -> str:
    """``path:line:text`` for every matching line of the text files under ``base`` (grep_worker runs it)."""
    lines: list[str] = []
    size = 0
    for shown, _info, dir_fd, name in files.walk(base):
        data = files.read_at(dir_fd, name, READ_HARD_LIMIT)
        if data is None:
            continue
        try:
            text = data.decode()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if regex.search(line):
                entry = f"{shown}:{number}:{line[:GREP_LINE_LIMIT]}"
                size += len(entry) + 1
                if size > GREP_OUTPUT_LIMIT:
                    lines.append("[output truncated]")
                    return "\n".join(lines)
                lines.append(entry)
    return "\n".join(lines)
