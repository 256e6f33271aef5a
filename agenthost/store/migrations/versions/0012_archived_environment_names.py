"""An archived environment's name is free again: names are unique among a workspace's active environments.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ACTIVE = sa.text("archived_at IS NULL")


def upgrade() -> None:
    # SQLite cannot drop a table's UNIQUE constraint: batch mode rebuilds the table (foreign keys are off
    # while migrations run there, as SQLite's procedure for rebuilding a table asks; store/db.py).
    with op.batch_alter_table("environments") as batch:
        batch.drop_constraint("uq_environments_workspace_name", type_="unique")
    op.create_index(
        "uq_environments_active_name",
        "environments",
        ["workspace_id", "name"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_environments_active_name", table_name="environments")
    with op.batch_alter_table("environments") as batch:
        batch.create_unique_constraint("uq_environments_workspace_name", ["workspace_id", "name"])
