"""Devices: how many of their events the gateway dropped, over the rate limit or too big.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("events_over_rate", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("events_too_big", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("last_event_dropped_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("last_event_dropped_at")
        batch.drop_column("events_too_big")
        batch.drop_column("events_over_rate")
