"""Sealed authorization tokens of sessions' GitHub repository resources.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_repositories",
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(64), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_session_repositories_session_id", "session_repositories", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_session_repositories_session_id", table_name="session_repositories")
    op.drop_table("session_repositories")
