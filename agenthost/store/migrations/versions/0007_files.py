"""The Files API: file metadata (contents live in the files directory).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
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
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_files_workspace_id", "files", ["workspace_id", "id"])
    op.create_index("ix_files_session_id", "files", ["session_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_files_session_id", "files")
    op.drop_index("ix_files_workspace_id", "files")
    op.drop_table("files")
