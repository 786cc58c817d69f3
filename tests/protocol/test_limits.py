"""protocol/limits.py: what each Device OS release takes, from protocol_defs.h per tag."""

from __future__ import annotations

import pytest

from cyan.protocol.limits import GEN2_LARGE, LARGE, MEDIUM, SMALL, device_limits, limits_for_module
from cyan.protocol.messages import HelloFlags, HelloInfo


@pytest.mark.parametrize(
    ("module", "platform", "expected"),
    [
        (207, 6, SMALL),  # 0.7.0: 64-byte buffer with its NUL
        (302, 6, SMALL),  # 0.8.0-rc.3, still the Core-era limits
        (303, 6, MEDIUM),  # 0.8.0-rc.4: 622
        (1512, 6, MEDIUM),
        (2302, 8, MEDIUM),
        (3003, 6, MEDIUM),  # 3.0.0-rc.1
        (3004, 6, GEN2_LARGE),  # 3.0.0-rc.2: 864 on Gen 2
        (3302, 10, GEN2_LARGE),
        (3302, 12, LARGE),  # Gen 3 (Argon): 1024
        (5002, 3, LARGE),  # the Linux virtual platform, as seen on the wire (§7.1)
    ],
)
def test_limits_by_module_version(module: int, platform: int, expected: object) -> None:
    assert limits_for_module(module, platform) == expected


def test_the_numbers() -> None:
    assert (SMALL.function_argument_bytes, SMALL.name_bytes, SMALL.event_data_bytes) == (
        63,
        12,
        255,
    )
    assert (MEDIUM.function_argument_bytes, MEDIUM.name_bytes) == (622, 64)
    assert GEN2_LARGE.event_data_bytes == 864
    assert LARGE.function_argument_bytes == 1024
    assert {x.event_name_bytes for x in (SMALL, MEDIUM, GEN2_LARGE, LARGE)} == {64}


def test_without_a_version_the_hello_flags_tell_the_era() -> None:
    old = device_limits(HelloInfo(6, 3, 0, 6), None, None)
    new = device_limits(HelloInfo(6, 3, HelloFlags.DIAGNOSTICS, 6), None, None)

    assert old.function_argument_bytes == 63
    assert old.basis == "Device OS older than 0.8 (its Hello)"
    assert new.function_argument_bytes == 622
    assert new.basis == "Device OS 0.8 or later (its Hello)"


def test_a_version_names_its_release_or_its_number() -> None:
    hello = HelloInfo(6, 3, 0, 6)
    assert device_limits(hello, 207, "0.7.0").basis == "Device OS 0.7.0"
    assert device_limits(hello, 4321, None).basis == "system module version 4321"
    long_hello = HelloInfo(3, 1, 0x36, 3, 5002)
    assert device_limits(long_hello, None, "5.0.0").function_argument_bytes == 1024
