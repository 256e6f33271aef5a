"""The grep tool's search, run as its own process (``python -m agenthost.tools.grep_worker``).

Reads ``{"mounts": [[path, host, writable], ...], "base": str, "pattern": str}`` on stdin and
writes ``{"text": ...}`` or ``{"error": ...}`` on stdout. The server kills it when it runs
past the tool's time limit, so a pattern that backtracks for minutes costs one process,
not the server's interpreter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from agenthost.sandbox.rooted import FileAccessError, Mount, RootedFiles
from agenthost.tools.files import search


def main() -> None:
    request = json.load(sys.stdin)
    files = RootedFiles([Mount(path, Path(host), writable) for path, host, writable in request["mounts"]])
    try:
        answer = {"text": search(files, request["base"], re.compile(request["pattern"]))}
    except FileAccessError as exc:
        answer = {"error": str(exc)}
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
