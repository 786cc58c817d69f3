"""Connection failures: a bounded history per device and per remote address.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connection_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_id", sa.String(24), nullable=True),
        sa.Column("remote_address", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_failures")),
    )
    op.create_index(op.f("ix_connection_failures_device_id"), "connection_failures", ["device_id"])
    op.create_index(
        op.f("ix_connection_failures_remote_address"), "connection_failures", ["remote_address"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_connection_failures_remote_address"), table_name="connection_failures")
    op.drop_index(op.f("ix_connection_failures_device_id"), table_name="connection_failures")
    op.drop_table("connection_failures")
