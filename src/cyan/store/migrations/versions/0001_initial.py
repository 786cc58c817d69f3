"""Initial schema: users, access tokens, devices and their public keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Tables are spelled out here rather than built from the models, so this
revision keeps describing the same schema however the models change later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("username_key", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username_key", name=op.f("uq_users_username_key")),
    )
    op.create_table(
        "access_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_access_tokens")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_access_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_access_tokens_user_id"), "access_tokens", ["user_id"])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("platform_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("product_firmware_version", sa.Integer(), nullable=True),
        sa.Column("system_firmware_version", sa.String(64), nullable=True),
        sa.Column("last_ip", sa.String(64), nullable=True),
        _timestamp("last_heard", nullable=True),
        _timestamp("last_handshake_at", nullable=True),
        sa.Column("online", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("functions", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_devices_owner_id_users"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(op.f("ix_devices_name"), "devices", ["name"])
    op.create_index(op.f("ix_devices_owner_id"), "devices", ["owner_id"])
    op.create_table(
        "device_keys",
        sa.Column("device_id", sa.String(24), nullable=False),
        sa.Column("public_key_der", sa.LargeBinary(), nullable=False),
        sa.Column("algorithm", sa.String(16), server_default="rsa", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_keys")),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_keys_device_id_devices"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("device_keys")
    op.drop_index(op.f("ix_devices_owner_id"), table_name="devices")
    op.drop_index(op.f("ix_devices_name"), table_name="devices")
    op.drop_table("devices")
    op.drop_index(op.f("ix_access_tokens_user_id"), table_name="access_tokens")
    op.drop_table("access_tokens")
    op.drop_table("users")
