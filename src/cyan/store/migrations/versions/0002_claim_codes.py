"""Claim codes: a user's one-time code that a device presents to become theirs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claim_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_claim_codes")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_claim_codes_user_id_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_claim_codes_user_id"), "claim_codes", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_claim_codes_user_id"), table_name="claim_codes")
    op.drop_table("claim_codes")
