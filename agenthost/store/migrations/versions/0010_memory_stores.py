"""Memory stores: stores, memories (current state) and memory versions.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Paths compare byte by byte on PostgreSQL too, as they do in SQLite.
PATH = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "memory_stores",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("archived_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_memory_stores_workspace_id", "memory_stores", ["workspace_id", "id"])
    op.create_table(
        "memories",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.String(64), sa.ForeignKey("memory_stores.id", ondelete="CASCADE"), nullable=False),
        sa.Column("path", PATH, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("content_size_bytes", sa.Integer, nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("store_id", "path", name="uq_memories_store_path"),
    )
    op.create_table(
        "memory_versions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.String(64), sa.ForeignKey("memory_stores.id", ondelete="CASCADE"), nullable=False),
        sa.Column("memory_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("path", PATH, nullable=True),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=True),
        sa.Column("content_size_bytes", sa.Integer, nullable=True),
        sa.Column("actor_type", sa.String(32), nullable=True),
        sa.Column("actor_id", sa.String(255), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("redacted_at", sa.BigInteger, nullable=True),
        sa.Column("redactor_type", sa.String(32), nullable=True),
        sa.Column("redactor_id", sa.String(255), nullable=True),
    )
    op.create_index("ix_memory_versions_store_id", "memory_versions", ["store_id", "id"])
    op.create_index("ix_memory_versions_memory_id", "memory_versions", ["memory_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_memory_versions_memory_id", "memory_versions")
    op.drop_index("ix_memory_versions_store_id", "memory_versions")
    op.drop_table("memory_versions")
    op.drop_table("memories")
    op.drop_index("ix_memory_stores_workspace_id", "memory_stores")
    op.drop_table("memory_stores")
