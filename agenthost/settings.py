"""One settings object for the whole server (layer 0).

Every field is read from an ``AGENTHOST_``-prefixed environment variable and
documented in ``docs/settings.md`` (``tests/test_docs.py`` keeps the two in step).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
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
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            "An API key accepted for the default workspace, for scripted setups. "
            "When set, no key is generated at first start."
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
    log_level: str = Field(default="info", description="Log level of the server and uvicorn.")
    ping_seconds: float = Field(
        default=15.0, gt=0, description="Interval of `ping` frames on event streams (keeps idle streams open)."
    )
    lease_seconds: float = Field(
        default=30.0, gt=0, description="How long an engine's claim on a running session lasts without a heartbeat."
    )
    engine_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the engine looks for runnable sessions besides in-process wake-ups."
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
    web_fetch_private_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Hosts the web_fetch tool may reach although they resolve to loopback or private addresses "
            '(JSON list, e.g. `["wiki.internal"]`). Every other non-public address is refused.'
        ),
    )
    sandbox_idle_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a session's sandbox processes live after its last turn; the workspace stays on disk.",
    )
    sandbox: str = Field(
        default="local",
        description=(
            "Tool sandbox backend. `local` (the only one so far) is UNSAFE: commands run as the server's user with "
            "no isolation, in `<data_dir>/workspaces/<session_id>`."
        ),
    )

    def resolved_data_dir(self) -> Path:
        """The data directory with `~` expanded."""
        return self.data_dir.expanduser()

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the store: plain ``sqlite:///`` (run in threads) or ``postgresql+asyncpg://``."""
        url = self.database_url or f"sqlite:///{self.resolved_data_dir() / 'agenthost.db'}"
        if url.startswith("sqlite+aiosqlite:///"):
            return "sqlite:///" + url.removeprefix("sqlite+aiosqlite:///")
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url.removeprefix(prefix)
        return url
