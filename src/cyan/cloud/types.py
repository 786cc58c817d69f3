"""Plain values that cross the cloud layer: what is known of a live device, updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cyan.protocol import ota
from cyan.protocol.limits import MEDIUM, DeviceLimits
from cyan.protocol.transfer import UpdateState

VariableValue = bool | int | float | str


@dataclass(frozen=True, slots=True)
class LiveDevice:
    """What the gateway knows of a connected device (presence is in memory, design.md)."""

    device_id: str
    remote_ip: str
    connected_at: datetime
    last_heard: datetime
    platform_id: int
    product_id: int
    product_firmware_version: int
    functions: tuple[str, ...] = ()
    # name -> type name ("int32", "double", "string", "bool")
    variables: dict[str, str] = field(default_factory=dict)
    system_version: str | None = None
    signaling: bool = False
    # The "m" entries of its system describe: the firmware modules it runs.
    modules: tuple[dict[str, Any], ...] = ()
    # The OTA chunk size it announced (spark/hardware/ota_chunk_size), if it did.
    ota_chunk_bytes: int | None = None
    # What it can take (argument, name and event sizes), by its Device OS; the gateway
    # sets it from the Hello and again once the system describe names the release.
    limits: DeviceLimits = MEDIUM
    # Device OS 2.x+ posts its own describe once setup() has run (Hello flag 0x20); older
    # releases never do, so the cloud must ask again to learn late registrations.
    self_describes: bool = False


@dataclass(frozen=True, slots=True)
class UpdateProgress:
    """Where an over-the-air update stands, as the gateway sees it."""

    state: UpdateState
    bytes_sent: int
    total_bytes: int
    chunks_resent: int
    fast: bool | None  # None until the device said which mode it uses
    failure: str | None


@dataclass(frozen=True, slots=True)
class FlashOptions:
    """How the cloud wants an update sent."""

    # Used when the device announced no chunk size of its own (ota.CHUNK_SIZE_EVENT).
    chunk_bytes: int = ota.DEFAULT_CHUNK_BYTES
    offer_fast: bool = True
    # The whole update; a Photon takes a 256 KB system part in well under a minute on a LAN.
    deadline_s: float = 300.0
