"""Engine state: on sessions, input pending, what a paused turn waits for and the run lease; on events,
input flushed when a turn's retries were exhausted.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("blocked_on", sa.JSON, nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_generation", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_expires_at", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("running_since", sa.BigInteger, nullable=True))
    op.create_index("ix_sessions_pending", "sessions", ["pending"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("flushed", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("flushed")
    op.drop_index("ix_sessions_pending", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for column in ("running_since", "lease_expires_at", "lease_generation", "lease_owner", "blocked_on", "pending"):
            batch.drop_column(column)
