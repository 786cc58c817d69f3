"""How each Device OS version behaves on connect (protocol.md §7, observed on the wire)."""

from __future__ import annotations

from dataclasses import dataclass

from cyan.firmware import MAX_BINARY_BYTES
from cyan.firmware.platforms import PHOTON
from cyan.protocol import ota
from cyan.protocol.limits import DeviceLimits, limits_for_module
from cyan.protocol.messages import HelloFlags


@dataclass(frozen=True, slots=True)
class FirmwareProfile:
    version: str
    hello_flags: int
    # device-os 2.x answers describe and variables with an empty ACK and a separate response;
    # 0.x and 1.x piggy-back the answer on the ACK.
    separate_responses: bool
    # Posts its system describe right after Hello, and its application describe once
    # setup() has run (device-os main.cpp applicationSetupDone), without being asked.
    # Older releases register what setup() registers silently (protocol.md §7.1).
    posts_describe: bool
    # Private events sent right after connecting.
    connect_events: tuple[tuple[str, str], ...]
    # (prefix, my devices only)
    system_subscriptions: tuple[tuple[str, bool], ...]
    # Module versions of the release (device-os system/system-versions.md): both system
    # parts carry the system module version; the bootloader has its own.
    system_module_version: int = 2302
    bootloader_version: int = 1006
    # Asks the server for the time once connected (every release does).
    requests_time: bool = True

    @property
    def limits(self) -> DeviceLimits:
        """Its argument, name and event sizes (protocol/limits.py)."""
        return limits_for_module(self.system_module_version, PHOTON)


_HARDWARE = (
    ("spark/hardware/max_binary", str(MAX_BINARY_BYTES)),
    (ota.CHUNK_SIZE_EVENT, str(ota.DEFAULT_CHUNK_BYTES)),
)

PROFILES = {
    "2.3.1": FirmwareProfile(
        version="2.3.1",
        hello_flags=HelloFlags.DIAGNOSTICS
        | HelloFlags.IMMEDIATE_UPDATES
        | HelloFlags.GOODBYE
        | HelloFlags.DEVICE_INITIATED_DESCRIBE,
        separate_responses=True,
        posts_describe=True,
        connect_events=(
            *_HARDWARE,
            ("particle/device/updates/enabled", "true"),
            ("particle/device/updates/forced", "false"),
        ),
        system_subscriptions=(("particle", True), ("spark", True)),
        system_module_version=2302,
        bootloader_version=1006,
    ),
    "1.5.2": FirmwareProfile(
        version="1.5.2",
        hello_flags=HelloFlags.DIAGNOSTICS | HelloFlags.IMMEDIATE_UPDATES,
        separate_responses=False,
        posts_describe=False,
        connect_events=_HARDWARE,
        system_subscriptions=(("spark", True),),
        system_module_version=1512,
        bootloader_version=502,
    ),
    "0.7.0": FirmwareProfile(
        version="0.7.0",
        hello_flags=0,
        separate_responses=False,
        posts_describe=False,
        connect_events=_HARDWARE,
        system_subscriptions=(("spark", False),),
        system_module_version=207,
        bootloader_version=101,
    ),
}
DEFAULT_PROFILE = PROFILES["2.3.1"]
