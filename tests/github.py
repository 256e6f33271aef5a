"""A stand-in for github.com in tests: real repositories over git's smart HTTP protocol.

``git http-backend`` (CGI) answers behind a small threaded HTTP server in the test process, on a
loopback port. It asks for ``Authorization: Basic base64(x-access-token:<token>)`` with one of
the tokens it was told to accept (401 otherwise), except for repositories of the ``public``
owner, answers 403 for the ``forbidden`` owner, holds requests for the ``slow`` owner until
``opened`` is set, and records every Authorization header it saw.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git for the test's own repositories (no user or system configuration)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


@dataclass
class Widgets:
    """The commits of the test repository ``acme/widgets``."""

    first: str  # main's first commit: README "widgets v1"
    main: str  # main's tip: README "widgets v2" (the default branch)
    feature: str  # branch "feature", from the first commit: adds feature.txt
    pull: str  # only under refs/pull/1/head (like a GitHub pull request): adds pull.txt


@dataclass
class GitHub:
    url: str
    root: Path
    widgets: Widgets
    tokens: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    opened: threading.Event = field(default_factory=threading.Event)
    """Requests for ``slow/...`` wait for this; ``held`` is set when one arrives."""
    held: threading.Event = field(default_factory=threading.Event)

    def accept(self, token: str) -> None:
        with self.lock:
            self.tokens.add(token)

    def headers(self) -> list[str]:
        with self.lock:
            return list(self.seen)


def make_repositories(root: Path, work: Path) -> Widgets:
    """``acme/widgets`` (also served as ``public/widgets`` and ``forbidden/widgets``) as bare repositories."""
    source = work / "widgets"
    source.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=source)
    (source / "README.md").write_text("widgets v1\n")
    git("add", "README.md", cwd=source)
    git("commit", "-q", "-m", "first", cwd=source)
    first = git("rev-parse", "HEAD", cwd=source)
    git("checkout", "-q", "-b", "feature", cwd=source)
    (source / "feature.txt").write_text("a feature\n")
    git("add", "feature.txt", cwd=source)
    git("commit", "-q", "-m", "feature", cwd=source)
    feature = git("rev-parse", "HEAD", cwd=source)
    git("checkout", "-q", "--detach", first, cwd=source)
    (source / "pull.txt").write_text("a pull request\n")
    git("add", "pull.txt", cwd=source)
    git("commit", "-q", "-m", "pull request", cwd=source)
    pull = git("rev-parse", "HEAD", cwd=source)
    git("checkout", "-q", "main", cwd=source)
    (source / "README.md").write_text("widgets v2\n")
    git("commit", "-q", "-am", "second", cwd=source)
    main = git("rev-parse", "HEAD", cwd=source)
    for owner in ("acme", "public", "forbidden", "slow"):
        bare = root / owner / "widgets.git"
        git("clone", "-q", "--bare", str(source), str(bare))
        git("update-ref", "refs/pull/1/head", pull, cwd=bare)
    return Widgets(first, main, feature, pull)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _cgi(self) -> None:
        state: GitHub = self.server.state
        body = self._body()
        authorization = self.headers.get("Authorization") or ""
        with state.lock:
            state.seen.append(authorization)
            allowed = {basic(token) for token in state.tokens}
        path, _, query = self.path.partition("?")
        if path.startswith("/slow/") and not state.opened.is_set():
            state.held.set()
            state.opened.wait(60)
        if path.startswith("/forbidden/"):
            self._reply(403, b"forbidden\n")
            return
        if not path.startswith("/public/") and authorization not in allowed:
            self._reply(401, b"authentication required\n", [("WWW-Authenticate", 'Basic realm="test"')])
            return
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(state.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "x-access-token",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self._reply(status, payload, headers)

    def _reply(self, status: int, payload: bytes, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a clone stopped by an interrupt) is no error here."""


class GitHubServer:
    """Serves a :class:`GitHub` until stopped."""

    def __init__(self, root: Path, work: Path):
        root.mkdir(parents=True, exist_ok=True)
        widgets = make_repositories(root, work)
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.state = GitHub(f"http://127.0.0.1:{self.httpd.server_address[1]}", root, widgets)
        self.httpd.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> GitHub:
        self.thread.start()
        return self.state

    def stop(self) -> None:
        self.state.opened.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
