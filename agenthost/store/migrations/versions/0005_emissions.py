"""Emission numbers: every time an event is shown to subscribers (appended, or taken from the queue and
shown again with its ``processed_at``) it gets the next number of its session, so any process can
rebuild a session's stream from the log after a watermark (the PostgreSQL fan-out).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_emit", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("emit_first", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("emit_last", sa.BigInteger, nullable=False, server_default="0"))
    # Existing logs: one emission per event, numbered like the events themselves.
    op.execute("UPDATE events SET emit_first = seq, emit_last = seq")
    op.execute("UPDATE sessions SET last_emit = last_seq")
    op.create_index("ix_events_session_emit", "events", ["session_id", "emit_last"])


def downgrade() -> None:
    op.drop_index("ix_events_session_emit", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("emit_last")
        batch.drop_column("emit_first")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("last_emit")
