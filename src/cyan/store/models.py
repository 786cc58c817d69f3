"""ORM tables. The schema itself is owned by the Alembic migrations; these
classes must describe exactly what the migrations build (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cyan.store.records import (
    ConnectionFailure,
    DeviceRecord,
    FirmwareUpdateRecord,
    UserRecord,
)

# Explicit constraint names, so a later migration can drop or alter a constraint
# by name on every dialect (SQLite otherwise leaves them anonymous).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    PostgreSQL keeps the zone (timestamptz); SQLite stores text without one, so
    values are normalised to UTC on the way in and re-labelled UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value's zone is a guess; storing it would silently shift times.
            raise ValueError(f"naive datetime {value.isoformat()} given where UTC is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    # casefold() of username: uniqueness and lookups are case-insensitive on both
    # dialects without relying on expression indexes or collations.
    username_key: Mapped[str] = mapped_column(sa.String(255), nullable=False, unique=True)
    password_hash: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)

    def to_record(self) -> UserRecord:
        return UserRecord(id=self.id, username=self.username, created_at=self.created_at)


class AccessToken(Base):
    __tablename__ = "access_tokens"

    # sha256 hex of the bearer token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    client_id: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(sa.String(24), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(255), nullable=True, index=True)
    owner_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    platform_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    product_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    product_firmware_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    system_firmware_version: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    last_ip: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    last_heard: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_handshake_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    online: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    functions: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    variables: Mapped[dict[str, str]] = mapped_column(sa.JSON, nullable=False, default=dict)
    notes: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # The "m" list of the device's last system describe: its firmware modules.
    modules: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON, nullable=True)
    # Events the gateway dropped: over the rate limit (1/s, bursts of 4) or over the sizes
    # the device's Device OS allows.
    events_over_rate: Mapped[int] = mapped_column(
        sa.Integer, nullable=False, default=0, server_default="0"
    )
    events_too_big: Mapped[int] = mapped_column(
        sa.Integer, nullable=False, default=0, server_default="0"
    )
    last_event_dropped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def to_record(self) -> DeviceRecord:
        return DeviceRecord(
            id=self.id,
            name=self.name,
            owner_id=self.owner_id,
            platform_id=self.platform_id,
            product_id=self.product_id,
            product_firmware_version=self.product_firmware_version,
            system_firmware_version=self.system_firmware_version,
            last_ip=self.last_ip,
            last_heard=self.last_heard,
            last_handshake_at=self.last_handshake_at,
            online=self.online,
            # Copies: the record must not share mutable state with the ORM row.
            functions=tuple(self.functions),
            variables=dict(self.variables),
            notes=self.notes,
            created_at=self.created_at,
            modules=tuple(self.modules or ()),
            events_over_rate=self.events_over_rate or 0,
            events_too_big=self.events_too_big or 0,
            last_event_dropped_at=self.last_event_dropped_at,
        )


class DeviceKey(Base):
    __tablename__ = "device_keys"

    device_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    public_key_der: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    algorithm: Mapped[str] = mapped_column(
        sa.String(16), nullable=False, default="rsa", server_default="rsa"
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class ClaimCode(Base):
    __tablename__ = "claim_codes"

    # sha256 hex of the code: like tokens, a claim code is a secret for its lifetime.
    code_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The device that redeemed it; a redeemed code is spent.
    device_id: Mapped[str | None] = mapped_column(sa.String(24), nullable=True)


class ConnectionFailureRow(Base):
    __tablename__ = "connection_failures"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # No foreign key: a device that is not registered (unknown-device) names an id all the
    # same, and that failure is the one its owner most needs to see.
    device_id: Mapped[str | None] = mapped_column(sa.String(24), nullable=True, index=True)
    remote_address: Mapped[str] = mapped_column(sa.String(64), nullable=False, index=True)
    # Only the stage and the connection's own reason are kept: cause and fix are looked up
    # in cyan.diagnose when shown, so improving a sentence improves old records too.
    stage: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    reason: Mapped[str] = mapped_column(sa.Text, nullable=False)

    def to_record(self) -> ConnectionFailure:
        return ConnectionFailure(
            at=self.at,
            remote_address=self.remote_address,
            device_id=self.device_id,
            stage=self.stage,
            reason=self.reason,
        )


class FirmwareUpdate(Base):
    """One over-the-air update: what was sent to which device, and how it ended."""

    __tablename__ = "firmware_updates"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # No foreign key: the record of an update outlives a device removed afterwards.
    device_id: Mapped[str] = mapped_column(sa.String(24), nullable=False, index=True)
    file_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    # The binary waits in the data directory until the update ends; None once removed.
    file_path: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    size: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    module: Mapped[str] = mapped_column(sa.Text, nullable=False)
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, index=True)
    fast: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    bytes_sent: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    chunks_resent: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    failure: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def to_record(self) -> FirmwareUpdateRecord:
        return FirmwareUpdateRecord(
            id=self.id,
            device_id=self.device_id,
            file_name=self.file_name,
            file_path=self.file_path,
            size=self.size,
            sha256=self.sha256,
            module=self.module,
            state=self.state,
            fast=self.fast,
            bytes_sent=self.bytes_sent,
            chunks_resent=self.chunks_resent,
            failure=self.failure,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )
