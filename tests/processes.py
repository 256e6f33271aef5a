"""`agenthost` commands as real processes for crash, hand-over and multi-replica tests.

Each process gets a clean ``AGENTHOST_*`` environment from its keyword settings, logs to a file,
and is ready when its API answers ``/health`` (``serve``) or it printed that its engine is
ready (``worker``). The model is the session's fake, reached through ``ANTHROPIC_BASE_URL``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx2

from tests.conftest import wait_until

KEY = "sk-ah-processes-0123456789abcdef"
FAST = {
    "lease_seconds": "1.5",
    "engine_poll_seconds": "0.2",
    "ping_seconds": "0.5",
    "notify_check_seconds": "0.5",
    "log_level": "warning",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def running(command: str) -> bool:
    """Whether a process with exactly this command line runs (a sandboxed ``sleep``, say)."""
    return subprocess.run(["pgrep", "-f", f"^{command}$"], capture_output=True, check=False).returncode == 0


class Agenthost:
    """One running `agenthost serve|worker` command."""

    def __init__(self, args: list[str], data_dir: Path, *, port: int | None = None, **settings: str):
        # pytest's temp dirs are private, so sandboxes go where their uids can reach (the same for a restart).
        default = Path(tempfile.gettempdir()) / f"agenthost-sbx-{hashlib.sha1(bytes(data_dir)).hexdigest()[:12]}"
        self.sandbox_dir = Path(settings.setdefault("sandbox_dir", str(default)))
        self.sandbox_dir.mkdir(mode=0o711, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
        env |= {"AGENTHOST_DATA_DIR": str(data_dir), "AGENTHOST_API_KEY": KEY}
        env |= {f"AGENTHOST_{name.upper()}": value for name, value in (FAST | settings).items()}
        self.url = f"http://127.0.0.1:{port}" if port is not None else None
        command = [sys.executable, "-m", "agenthost", *args, *(["--port", str(port)] if port is not None else [])]
        self.log = data_dir / f"{args[0]}-{os.urandom(3).hex()}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=60)

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"{self.proc.args} exited:\n{self.log.read_text()}"
        if self.url is None:
            return "engine ready" in self.log.read_text()
        try:
            return httpx2.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
