"""SQLAlchemy Core tables (layer 1). Portable to SQLite and PostgreSQL: no dialect-only SQL.

Timestamps are integer microseconds since the epoch (sortable, exact, identical on
both databases). Resource bodies that the API echoes are JSON documents.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Micros = sa.BigInteger

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, unique=True),
    sa.Column("created_at", Micros, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("revoked_at", Micros, nullable=True),
    # Migration 0006: set on environment keys, which act only for that self-hosted environment's worker.
    sa.Column("environment_id", sa.String(64), nullable=True),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("archived_at", Micros, nullable=True),
    sa.Index("ix_agents_workspace_id", "workspace_id", "id"),
)

agent_versions = sa.Table(
    "agent_versions",
    metadata,
    sa.Column("agent_id", sa.String(64), sa.ForeignKey("agents.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
)

environments = sa.Table(
    "environments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("archived_at", Micros, nullable=True),
    # Migration 0012: a name is unique among the workspace's environments that are not archived.
    sa.Index(
        "uq_environments_active_name",
        "workspace_id",
        "name",
        unique=True,
        sqlite_where=sa.text("archived_at IS NULL"),
        postgresql_where=sa.text("archived_at IS NULL"),
    ),
    sa.Index("ix_environments_workspace_id", "workspace_id", "id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("agent_version", sa.Integer, nullable=False),
    sa.Column("environment_id", sa.String(64), sa.ForeignKey("environments.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("agent", sa.JSON, nullable=False),
    sa.Column("resources", sa.JSON, nullable=False),
    sa.Column("vault_ids", sa.JSON, nullable=False),
    sa.Column("usage", sa.JSON, nullable=False),
    sa.Column("active_us", Micros, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("deployment_id", sa.String(64), nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("archived_at", Micros, nullable=True),
    # Engine state (migration 0002): input waiting to be processed, the event ids a paused turn
    # waits on, the run lease (owner + generation fence every engine write) and when running began.
    sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("blocked_on", sa.JSON, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_expires_at", Micros, nullable=True),
    sa.Column("running_since", Micros, nullable=True),
    # The sandbox backend that holds the session's files (migration 0003), set by its first run.
    sa.Column("sandbox_backend", sa.String(32), nullable=True),
    # Migration 0005: the number of the session's newest emission (see events.emit_first).
    sa.Column("last_emit", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_sessions_workspace_id", "workspace_id", "id"),
    sa.Index("ix_sessions_environment_id", "environment_id"),
    sa.Index("ix_sessions_pending", "pending"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("processed_at", Micros, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    # Migration 0002: queued input dropped when a turn's retries were exhausted; never shown to the model.
    sa.Column("flushed", sa.Boolean, nullable=False, server_default=sa.false()),
    # Migration 0005: the session's emission numbers of this event's first showing (when appended) and
    # its last (when taken from the queue; equal to emit_first for events appended processed).
    sa.Column("emit_first", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("emit_last", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_events_session_emit", "session_id", "emit_last"),
)

# Migration 0004: answers to requests sent with an Idempotency-Key, kept for a day. A row with no
# status is a request still being worked on.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("workspace_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

# Migration 0006: work items of self-hosted environments. A queued item with
# ``polled_at`` is pending (handed to a worker, not acknowledged); ``latest_heartbeat`` is the exact
# string the worker must echo as ``expected_last_heartbeat``.
work_items = sa.Table(
    "work_items",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("environment_id", sa.String(64), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("polled_at", Micros, nullable=True),
    sa.Column("worker_id", sa.String(256), nullable=True),
    sa.Column("acknowledged_at", Micros, nullable=True),
    sa.Column("started_at", Micros, nullable=True),
    sa.Column("latest_heartbeat", sa.String(40), nullable=True),
    sa.Column("latest_heartbeat_at", Micros, nullable=True),
    sa.Column("ttl_seconds", sa.Integer, nullable=False),
    sa.Column("lease_expires_at", Micros, nullable=True),
    sa.Column("stop_requested_at", Micros, nullable=True),
    sa.Column("stopped_at", Micros, nullable=True),
    sa.Index("ix_work_items_queue", "environment_id", "state", "created_at"),
    sa.Index("ix_work_items_session", "session_id", "state"),
)

environment_workers = sa.Table(
    "environment_workers",
    metadata,
    sa.Column("environment_id", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.String(256), primary_key=True),
    sa.Column("last_poll_at", Micros, nullable=False),
)

# Migration 0007: Files API metadata; the contents are in the files directory
# (store/blobs.py), named by id. ``kind``: ``upload`` (POST /v1/files), ``copy`` (a session's own copy
# of an upload, made when it is attached) or ``output`` (written to /mnt/session/outputs; ``path`` is
# its place there and ``source_mtime`` the modification time it was read at). Copies and outputs
# belong to ``session_id`` and go with the session.
files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("mime_type", sa.String(255), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("downloadable", sa.Boolean, nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("path", sa.Text, nullable=True),
    sa.Column("source_mtime", sa.BigInteger, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("expires_at", Micros, nullable=True),
    sa.Index("ix_files_workspace_id", "workspace_id", "id"),
    sa.Index("ix_files_session_id", "session_id", "kind"),
)

# Migration 0008: vaults and their credentials. ``auth`` is the public part the API
# returns; ``secret`` the sealed secret fields (store/secrets.py), null once archived (purged).
# ``match_key`` is what must be unique among a vault's active credentials: ``mcp:<normalised url>``
# or ``env:<secret name>``.
vaults = sa.Table(
    "vaults",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("archived_at", Micros, nullable=True),
    sa.Index("ix_vaults_workspace_id", "workspace_id", "id"),
)

vault_credentials = sa.Table(
    "vault_credentials",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("vault_id", sa.String(64), sa.ForeignKey("vaults.id", ondelete="CASCADE"), nullable=False),
    sa.Column("display_name", sa.Text, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("auth", sa.JSON, nullable=False),
    sa.Column("secret", sa.Text, nullable=True),
    sa.Column("match_key", sa.Text, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("archived_at", Micros, nullable=True),
    sa.Index("ix_vault_credentials_vault_id", "vault_id", "id"),
)

# Migration 0009: the Skills API. A skill's ``name`` is its kebab-case slug, unique in
# its workspace and the same in every version; ``latest_version_id`` is its newest version (a skill
# always has one). Each version's files are one zip archive in the files directory's ``skills``
# folder (store/blobs.py), named by the version id.
skills = sa.Table(
    "skills",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("latest_version_id", sa.String(64), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_skills_workspace_name"),
    sa.Index("ix_skills_workspace_id", "workspace_id", "id"),
)

skill_versions = sa.Table(
    "skill_versions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("skill_id", sa.String(64), sa.ForeignKey("skills.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("file_count", sa.Integer, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),  # of the files, uncompressed
    sa.Column("created_at", Micros, nullable=False),
    sa.Index("ix_skill_versions_skill_id", "skill_id", "id"),
)

# Migration 0010: memory stores. ``memories`` holds each memory's current state and
# ``memory_versions`` one immutable row per change (kept after the memory is deleted, gone with the
# store). Content is stored as its UTF-8 bytes. Paths compare byte by byte on both databases (the
# "C" collation on PostgreSQL), so uniqueness is exact and lists sort the same everywhere. The
# author and redactor of a version are an actor kind (``session_actor``, ``api_actor`` ...) and the
# id it names, so lists can filter on them.
MemoryPath = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

memory_stores = sa.Table(
    "memory_stores",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Column("archived_at", Micros, nullable=True),
    sa.Index("ix_memory_stores_workspace_id", "workspace_id", "id"),
)

memories = sa.Table(
    "memories",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("store_id", sa.String(64), sa.ForeignKey("memory_stores.id", ondelete="CASCADE"), nullable=False),
    sa.Column("path", MemoryPath, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("content_size_bytes", sa.Integer, nullable=False),
    sa.Column("version_id", sa.String(64), nullable=False),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.UniqueConstraint("store_id", "path", name="uq_memories_store_path"),
)

memory_versions = sa.Table(
    "memory_versions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("store_id", sa.String(64), sa.ForeignKey("memory_stores.id", ondelete="CASCADE"), nullable=False),
    sa.Column("memory_id", sa.String(64), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("path", MemoryPath, nullable=True),
    sa.Column("content", sa.LargeBinary, nullable=True),
    sa.Column("content_sha256", sa.String(64), nullable=True),
    sa.Column("content_size_bytes", sa.Integer, nullable=True),
    sa.Column("actor_type", sa.String(32), nullable=True),
    sa.Column("actor_id", sa.String(255), nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("redacted_at", Micros, nullable=True),
    sa.Column("redactor_type", sa.String(32), nullable=True),
    sa.Column("redactor_id", sa.String(255), nullable=True),
    sa.Index("ix_memory_versions_store_id", "store_id", "id"),
    sa.Index("ix_memory_versions_memory_id", "memory_id", "id"),
)

# Migration 0011: the authorization tokens of a session's GitHub repository resources, sealed with the
# server key (store/secrets.py) and kept apart from ``sessions.resources``, which the API returns. One
# row per repository resource, ``token`` null when none was given (a public repository).
session_repositories = sa.Table(
    "session_repositories",
    metadata,
    sa.Column("resource_id", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token", sa.Text, nullable=True),
    sa.Column("created_at", Micros, nullable=False),
    sa.Column("updated_at", Micros, nullable=False),
    sa.Index("ix_session_repositories_session_id", "session_id"),
)
