"""api/shapes.py: the platform a device is, for its JSON and for the flash route's check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cyan.api.shapes import platform_id_of
from cyan.cloud.types import LiveDevice
from cyan.firmware.platforms import CORE, P1, PHOTON
from cyan.store import DeviceRecord

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def record(platform_id: int | None) -> DeviceRecord:
    return DeviceRecord(
        "0123456789abcdef01234567", None, None, platform_id, None, None, None, None, None,
        None, False, (), {}, None, NOW,
    )  # fmt: skip


def live(platform_id: int) -> LiveDevice:
    return LiveDevice("0123456789abcdef01234567", "127.0.0.1", NOW, NOW, platform_id, 0, 0)


@pytest.mark.parametrize(
    ("stored", "connected", "expected"),
    [
        (None, None, PHOTON),  # never said Hello: the common case
        (P1, None, P1),
        (CORE, None, CORE),  # a Core is platform 0, not "unknown"
        (PHOTON, live(CORE), CORE),  # what the device says now beats the store
        (None, live(CORE), CORE),
    ],
)
def test_the_platform_is_the_live_one_then_the_stored_one_then_the_photon(
    stored: int | None, connected: LiveDevice | None, expected: int
) -> None:
    assert platform_id_of(record(stored), connected) == expected
