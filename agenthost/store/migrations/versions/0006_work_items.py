"""Self-hosted environments: work items for their workers, environment keys, and who polls.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("environment_id", sa.String(64), nullable=True))
    op.create_table(
        "work_items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("environment_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("polled_at", sa.BigInteger, nullable=True),
        sa.Column("worker_id", sa.String(256), nullable=True),
        sa.Column("acknowledged_at", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("latest_heartbeat", sa.String(40), nullable=True),
        sa.Column("latest_heartbeat_at", sa.BigInteger, nullable=True),
        sa.Column("ttl_seconds", sa.Integer, nullable=False),
        sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
        sa.Column("stop_requested_at", sa.BigInteger, nullable=True),
        sa.Column("stopped_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_work_items_queue", "work_items", ["environment_id", "state", "created_at"])
    op.create_index("ix_work_items_session", "work_items", ["session_id", "state"])
    op.create_table(
        "environment_workers",
        sa.Column("environment_id", sa.String(64), primary_key=True),
        sa.Column("worker_id", sa.String(256), primary_key=True),
        sa.Column("last_poll_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("environment_workers")
    op.drop_index("ix_work_items_session", "work_items")
    op.drop_index("ix_work_items_queue", "work_items")
    op.drop_table("work_items")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("environment_id")
