"""Firmware: the modules a device last described, and over-the-air updates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("modules", sa.JSON(), nullable=True))
    op.create_table(
        "firmware_updates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("module", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fast", sa.Boolean(), nullable=True),
        sa.Column("bytes_sent", sa.Integer(), nullable=False),
        sa.Column("chunks_resent", sa.Integer(), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_updates")),
    )
    op.create_index(op.f("ix_firmware_updates_device_id"), "firmware_updates", ["device_id"])
    op.create_index(op.f("ix_firmware_updates_state"), "firmware_updates", ["state"])


def downgrade() -> None:
    op.drop_index(op.f("ix_firmware_updates_state"), table_name="firmware_updates")
    op.drop_index(op.f("ix_firmware_updates_device_id"), table_name="firmware_updates")
    op.drop_table("firmware_updates")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("modules")
