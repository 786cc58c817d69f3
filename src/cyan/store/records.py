"""Plain, immutable values the store hands out.

Callers never see ORM objects: those belong to a session that has ended by the
time the caller looks, and any lazy attribute load would then fail under asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    name: str | None
    owner_id: int | None
    platform_id: int | None
    product_id: int | None
    product_firmware_version: int | None
    system_firmware_version: str | None
    last_ip: str | None
    last_heard: datetime | None
    last_handshake_at: datetime | None
    online: bool
    functions: tuple[str, ...]
    variables: dict[str, str]
    notes: str | None
    created_at: datetime
    # The modules of its last system describe ("m" entries), newest known firmware.
    modules: tuple[dict[str, Any], ...] = ()
    # Events the gateway dropped (over the rate limit, too big), and when it last did.
    events_over_rate: int = 0
    events_too_big: int = 0
    last_event_dropped_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DroppedEvents:
    """Events of one device the gateway dropped since it last told the store."""

    device_id: str
    over_rate: int
    too_big: int
    last_at: datetime


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    device_id: str
    online: bool
    last_heard: datetime


@dataclass(frozen=True, slots=True)
class Registration:
    """What a handshake needs of a device: its public key (SPKI DER) and its owner."""

    public_key_der: bytes
    owner_id: int | None


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    """What a connection learned of a device; None fields are left as they are."""

    device_id: str
    ip: str | None = None
    handshake_at: datetime | None = None
    platform_id: int | None = None
    product_id: int | None = None
    product_firmware_version: int | None = None
    functions: tuple[str, ...] | None = None
    variables: dict[str, str] | None = None
    system_firmware_version: str | None = None
    modules: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class ConnectionFailure:
    """One failed or dropped device connection, as the gateway saw it."""

    at: datetime
    remote_address: str
    device_id: str | None  # None when the connection never named a device
    stage: str
    reason: str


@dataclass(frozen=True, slots=True)
class FirmwareUpdateRecord:
    id: int
    device_id: str
    file_name: str
    file_path: str | None
    size: int
    sha256: str
    module: str  # what it is, in words: "user part 1 v3 for the Photon"
    # sending until the device answers UpdateDone, then succeeded (it applies the firmware
    # and restarts) or failed (it keeps the old one): UpdateState's values.
    state: str
    fast: bool | None
    bytes_sent: int
    chunks_resent: int
    failure: str | None
    started_at: datetime
    finished_at: datetime | None
