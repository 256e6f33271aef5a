"""The Skills API: skills and their versions (each version's files are a zip in the files directory).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "skills",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("latest_version_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("workspace_id", "name", name="uq_skills_workspace_name"),
    )
    op.create_index("ix_skills_workspace_id", "skills", ["workspace_id", "id"])
    op.create_table(
        "skill_versions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("skill_id", sa.String(64), sa.ForeignKey("skills.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_skill_versions_skill_id", "skill_versions", ["skill_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_skill_versions_skill_id", "skill_versions")
    op.drop_table("skill_versions")
    op.drop_index("ix_skills_workspace_id", "skills")
    op.drop_table("skills")
