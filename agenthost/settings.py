"""One settings object for the whole server (layer 0).

Every field is read from an ``AGENTHOST_``-prefixed environment variable and
documented in ``docs/settings.md`` (``tests/test_docs.py`` keeps the two in step).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server configuration. CLI flags override fields; tests build their own."""

    model_config = SettingsConfigDict(env_prefix="AGENTHOST_", extra="ignore")

    data_dir: Path = Field(
        default=Path("~/.agenthost"),
        description="Directory for the SQLite database and other local state. Created if missing.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the store. Default: a SQLite file `agenthost.db` in the data directory. "
            "`postgresql://user@host/db` (asyncpg) is accepted as well."
        ),
    )
    database_pool_size: int = Field(
        default=5,
        ge=1,
        description=(
            "PostgreSQL: connections each process keeps open for its requests and turns. A process holds at most "
            "`database_pool_size + database_pool_overflow` of them, plus one that listens for notifications."
        ),
    )
    database_pool_overflow: int = Field(
        default=5, ge=0, description="PostgreSQL: connections a process may open beyond the pool under load."
    )
    database_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How long a request or a turn waits out a database that cannot be reached (refused, too many "
            "connections, pool exhausted, dropped connections), retrying with backoff; then a request gets 503 with "
            "`retry-after` and a turn waits for its lease to lapse and continues from the log."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "An API key accepted for the default workspace, for scripted setups. "
            "When set, no key is generated at first start."
        ),
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Fernet key (32 url-safe base64-encoded bytes) that seals vault credential secrets at rest. "
            "Default: generated at first start into `<data_dir>/secret.key` (mode 0600). Processes that share a "
            "database must share the key."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Interface `agenthost serve` binds to.")
    port: int = Field(default=8000, description="TCP port `agenthost serve` listens on.")
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "How long a verified API key is remembered in memory. A key revoked from another process "
            "stops working within this time. 0 checks the database on every request."
        ),
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        description="Largest JSON request body accepted; larger bodies get 413.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "`agenthost serve` closes a connection whose request line and headers have not all arrived this long "
            "after it opened, or after its previous response (slow or stalled clients)."
        ),
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for the next part of a request body; then the request gets 408.",
    )
    keep_alive_seconds: float = Field(
        default=5.0, gt=0, description="How long an idle keep-alive connection stays open between requests."
    )
    max_connections: int = Field(
        default=1000,
        gt=0,
        description=(
            "Most connections (and requests in flight) one `agenthost serve` process holds; past it, requests get "
            "503. Keep it under the process's open-file limit (`ulimit -n`)."
        ),
    )
    max_streams_per_key: int = Field(
        default=100,
        gt=0,
        description=(
            "Most event streams (`/events/stream`) one API key may hold open at once on one process; past it, "
            "a new stream gets 429 with `retry-after`."
        ),
    )
    files_dir: Path | None = Field(
        default=None,
        description=(
            "Where the Files API keeps file contents (one file each; metadata is in the database). "
            "Default `<data_dir>/files`. Processes that share a database must share this directory."
        ),
    )
    max_file_bytes: int = Field(
        default=500 * 1024 * 1024,
        gt=0,
        description="Largest file `POST /v1/files` accepts, and largest session output kept as a file; larger get 413.",
    )
    max_skill_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description=(
            "Largest total size of the files of one skill upload (`POST /v1/skills`, `POST /v1/skills/{id}/versions`), "
            "uncompressed; larger uploads get 413."
        ),
    )
    log_level: str = Field(default="info", description="Log level of the server and uvicorn.")
    metrics: bool = Field(
        default=False,
        description="Serve Prometheus metrics of this process at `GET /metrics` (each API replica and worker its own).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, `GET /metrics` needs it as a bearer token (`Authorization: Bearer ...`); API keys never "
        "reach the metrics.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port where `agenthost worker` serves its `/metrics` (on `host`); workers serve nothing else. "
        "API processes serve `/metrics` on their own port.",
    )
    ping_seconds: float = Field(
        default=15.0, gt=0, description="Interval of `ping` frames on event streams (keeps idle streams open)."
    )
    lease_seconds: float = Field(
        default=30.0, gt=0, description="How long an engine's claim on a running session lasts without a heartbeat."
    )
    engine_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the engine looks for runnable sessions besides in-process wake-ups."
    )
    notify_check_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "PostgreSQL only: how often each process checks its LISTEN connection and compares its open streams "
            "with the log, so a lost notification delays an event by at most this long."
        ),
    )
    model_retries: int = Field(
        default=4, ge=0, description="Retries of a model call that failed with an overload, rate limit or 5xx."
    )
    retry_base_seconds: float = Field(
        default=2.0, ge=0, description="First retry delay of a failed model call; doubles per attempt."
    )
    retry_max_seconds: float = Field(default=60.0, ge=0, description="Longest delay between model call retries.")
    max_tokens: int = Field(default=16384, gt=0, description="`max_tokens` of every model call.")
    max_model_calls: int = Field(
        default=200, gt=0, description="Model calls one turn may make before it is stopped with a session.error."
    )
    work_lease_seconds: int = Field(
        default=90,
        ge=1,
        le=600,
        description=(
            "Self-hosted environments: how long a worker holds a work item without a heartbeat (its "
            "`ttl_seconds`; the SDK worker beats every half of it). Then the item goes to the next worker."
        ),
    )
    web_search_url: str | None = Field(
        default=None,
        description=(
            "A SearXNG-compatible JSON search endpoint for the web_search tool (agenthost asks "
            "`GET <url>?q=<query>&format=json`). Unset: web_search is not offered to the model."
        ),
    )
    github_url: str = Field(
        default="https://github.com",
        description=(
            "Where GitHub repository resources are cloned from: replaces the `https://github.com` prefix of their "
            "URLs when the server clones (a GitHub Enterprise host, a mirror, or a local git server in tests). "
            "The URLs the API returns and the clones' `origin` stay `https://github.com/...`."
        ),
    )
    web_fetch_private_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts the web_fetch tool may reach although they resolve to loopback or private addresses "
            '(JSON list, e.g. `["wiki.internal"]`). Every other non-public address is refused.'
        ),
    )

    @field_validator("web_fetch_private_hosts")
    @classmethod
    def _hosts_in_lowercase(cls, hosts: list[str]) -> list[str]:
        return [host.lower() for host in hosts]

    grep_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long the grep tool may search (in its own process) before it is stopped."
    )
    sandbox_idle_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a session's sandbox processes live after its last turn; the workspace stays on disk.",
    )
    sandbox: Literal["bwrap", "docker", "local"] = Field(
        default="bwrap",
        description=(
            "Tool sandbox backend. `bwrap` (bubblewrap, the default) isolates each session: its own uid, "
            "namespaces, read-only system, cgroup limits, egress proxy. `docker`: a hardened container per "
            "session. `local` is UNSAFE: commands run as the server's user with no isolation; choose it only on "
            "a trusted machine without bubblewrap."
        ),
    )
    sandbox_docker_image: str | None = Field(
        default=None,
        description=(
            "Image of the docker backend's containers (needs /bin/bash and sleep). Default: an empty image with the "
            "host's /usr and /etc mounted read-only, as bubblewrap sandboxes see them."
        ),
    )
    sandbox_docker_host: str | None = Field(
        default=None, description="Docker engine of the docker backend (`unix:///…` or `tcp://…`); default the CLI's."
    )
    sandbox_dir: Path | None = Field(
        default=None,
        description=(
            "Where sessions' files live (`<dir>/<session_id>/workspace`, `outputs`, `uploads`). A root server's "
            "sandbox uids must be able to traverse its parents; default `<data_dir>/sandboxes`, or, for a root "
            "server whose data dir is private (new ones are), `/var/lib/agenthost/sandboxes/<hash of data_dir>`."
        ),
    )
    sandbox_upstream_ca_file: Path | None = Field(
        default=None,
        description=(
            "A PEM file of CAs the egress proxy trusts, besides the system's, when it forwards a request it put an "
            "`environment_variable` credential into (e.g. an internal CA)."
        ),
    )
    sandbox_memory_mb: int = Field(default=4096, gt=0, description="Memory limit of one sandbox (cgroup), MiB.")
    sandbox_pids: int = Field(default=1024, gt=0, description="Most processes one sandbox may run (cgroup, rlimit).")
    sandbox_cpus: float = Field(default=1.0, gt=0, description="CPU share of one sandbox, in cores (cgroup quota).")
    sandbox_tmp_mb: int = Field(default=1024, gt=0, description="Size of a sandbox's `/tmp` tmpfs, MiB.")
    sandbox_pip_index_url: str | None = Field(
        default=None,
        description="A pip index (PEP 503) sandboxes use instead of PyPI, for environment packages and the agent.",
    )
    sandbox_npm_registry: str | None = Field(
        default=None, description="An npm registry sandboxes use instead of registry.npmjs.org."
    )
    sandbox_trusted_hosts: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Hostnames the sandbox egress proxy connects to at a fixed address, exempt from the rule that refuses "
            'non-public addresses (JSON object, e.g. `{"pypi.internal": "10.0.0.5"}` for a local mirror). '
            "Environment policies still decide whether a sandbox may use them."
        ),
    )

    def resolved_data_dir(self) -> Path:
        """The data directory with `~` expanded."""
        return self.data_dir.expanduser()

    def make_data_dir(self) -> Path:
        """Create the data directory private to its owner (0700) when missing; an existing one is left as it is."""
        path = self.resolved_data_dir()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def resolved_files_dir(self) -> Path:
        """Where file contents live: see ``files_dir``."""
        return (self.files_dir or self.resolved_data_dir() / "files").expanduser()

    def resolved_sandbox_dir(self) -> Path:
        """Where sessions' files live: see ``sandbox_dir``."""
        if self.sandbox_dir is not None:
            return self.sandbox_dir.expanduser()
        data_dir = self.resolved_data_dir().absolute()
        default = data_dir / "sandboxes"
        # Only a root server runs sandboxes as other uids, which must pass through the directories above
        # theirs; a data directory not made yet will be private (make_data_dir), so it cannot hold them.
        if (
            self.sandbox == "local"
            or os.geteuid() != 0
            or (data_dir.exists() and all(_traversable(path) for path in (data_dir, *data_dir.parents)))
        ):
            return default
        digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
        return Path("/var/lib/agenthost/sandboxes") / digest

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the store: plain ``sqlite:///`` (run in threads) or ``postgresql+asyncpg://``."""
        url = self.database_url or f"sqlite:///{self.resolved_data_dir() / 'agenthost.db'}"
        if url.startswith("sqlite+aiosqlite:///"):
            return "sqlite:///" + url.removeprefix("sqlite+aiosqlite:///")
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url.removeprefix(prefix)
        return url


def _traversable(path: Path) -> bool:
    """Whether any user may pass through the directory (missing ones will be made by us)."""
    try:
        return bool(path.stat().st_mode & stat.S_IXOTH)
    except FileNotFoundError:
        return True
