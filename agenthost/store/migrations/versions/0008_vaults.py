"""Vaults and their credentials (secrets sealed with the server key).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vaults",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("archived_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_vaults_workspace_id", "vaults", ["workspace_id", "id"])
    op.create_table(
        "vault_credentials",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("vault_id", sa.String(64), sa.ForeignKey("vaults.id", ondelete="CASCADE"), nullable=False),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("auth", sa.JSON, nullable=False),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("match_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("archived_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_vault_credentials_vault_id", "vault_credentials", ["vault_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_vault_credentials_vault_id", "vault_credentials")
    op.drop_table("vault_credentials")
    op.drop_index("ix_vaults_workspace_id", "vaults")
    op.drop_table("vaults")
