"""`check_for_platform`, `PLATFORMS`, `platform_name` (src/cyan/firmware/platforms.py) and
`system_version_name` (src/cyan/firmware/versions.py)."""

from __future__ import annotations

import pytest

from cyan.firmware import (
    PLATFORMS,
    FirmwareError,
    ModuleFunction,
    ModuleStore,
    build_module,
    check_for_platform,
    parse_module,
    platform_name,
    system_version_name,
)
from tests.firmware.samples import P1, PHOTON, SYSTEM_PART, USER_PART, user_part


def test_the_photon_and_p1_share_one_flash_map() -> None:
    photon, p1 = PLATFORMS[PHOTON], PLATFORMS[P1]
    assert (photon.name, p1.name) == ("Photon", "P1")
    assert photon.slots == p1.slots
    # hal/src/photon/ota_module_bounds.c (v2.3.1)
    assert [
        (s.name, int(s.function), s.index, s.start_address, s.end_address, s.maximum_size)
        for s in photon.slots
    ] == [
        ("bootloader", 2, 0, 0x08000000, 0x08004000, 16 * 1024),
        ("system part 1", 4, 1, 0x08020000, 0x08060000, 256 * 1024),
        ("system part 2", 4, 2, 0x08060000, 0x080A0000, 256 * 1024),
        ("user part 1", 5, 1, 0x080A0000, 0x080C0000, 128 * 1024),
    ]
    assert all(s.store == ModuleStore.MAIN for s in photon.slots)
    assert photon.slot(SYSTEM_PART, 3) is None


def test_platform_names() -> None:
    assert [platform_name(i) for i in (6, 8, 0, 10, 12)] == [
        "Photon",
        "P1",
        "Core",
        "Electron",
        "platform 12",
    ]


def test_tinker_fits_its_own_platform_only(photon_tinker: bytes, p1_tinker: bytes) -> None:
    photon, p1 = parse_module(photon_tinker), parse_module(p1_tinker)
    check_for_platform(photon, PHOTON)
    check_for_platform(p1, P1)
    with pytest.raises(FirmwareError) as caught:
        check_for_platform(p1, PHOTON)
    p1_for_photon = "this binary is for the P1 (platform 8), not the Photon (platform 6)"
    assert caught.value.message == p1_for_photon
    with pytest.raises(FirmwareError) as caught:
        check_for_platform(photon, P1)
    photon_for_p1 = "this binary is for the Photon (platform 6), not the P1 (platform 8)"
    assert caught.value.message == photon_for_p1
    assert caught.value.fix is not None


def test_a_platform_cyan_has_no_name_for_is_named_by_number() -> None:
    argon_like = parse_module(
        build_module(
            platform_id=12,
            function=USER_PART,
            index=1,
            version=6,
            body=b"",
            start_address=0x000D4000,
        )
    )
    with pytest.raises(FirmwareError, match=r"^this binary is for platform 12, not the Photon"):
        check_for_platform(argon_like, PHOTON)
    with pytest.raises(FirmwareError, match="not of platform 12"):
        check_for_platform(argon_like, 12)


def test_a_user_part_too_big_for_the_slot_is_refused() -> None:
    module = parse_module(user_part(bytes(140000 - 68)))
    assert module.size == 140000
    with pytest.raises(FirmwareError) as caught:
        check_for_platform(module, PHOTON)
    assert caught.value.message == (
        "a user part of 140000 bytes does not fit the Photon's 128 KB user slot"
    )
    # One byte over: the module's CRC would land in the next slot.
    with pytest.raises(FirmwareError, match="131073 bytes does not fit"):
        check_for_platform(parse_module(user_part(bytes(128 * 1024 - 68 + 1))), PHOTON)


def test_a_slot_that_does_not_exist_is_refused() -> None:
    part3 = build_module(
        platform_id=PHOTON,
        function=SYSTEM_PART,
        index=3,
        version=2302,
        body=b"",
        start_address=0x08060000,
    )
    with pytest.raises(FirmwareError) as caught:
        check_for_platform(parse_module(part3), PHOTON)
    assert caught.value.message == (
        "the Photon has no slot for system part 3: its modules are bootloader, "
        "system part 1, system part 2, user part 1"
    )
    mono = build_module(
        platform_id=P1,
        function=ModuleFunction.MONO_FIRMWARE,
        index=0,
        version=1,
        body=b"",
        start_address=0x08020000,
    )
    with pytest.raises(FirmwareError, match="the P1 has no slot for monolithic firmware"):
        check_for_platform(parse_module(mono), P1)


def test_a_module_at_the_wrong_address_is_refused() -> None:
    moved = build_module(
        platform_id=PHOTON,
        function=USER_PART,
        index=1,
        version=1,
        body=b"",
        start_address=0x080A0400,
    )
    with pytest.raises(FirmwareError) as caught:
        check_for_platform(parse_module(moved), PHOTON)
    assert caught.value.message == (
        "user part 1 must start at 0x080A0000 on the Photon, but this one starts at 0x080A0400"
    )
    part2_at_part1 = build_module(
        platform_id=PHOTON,
        function=SYSTEM_PART,
        index=2,
        version=2302,
        body=b"",
        start_address=0x08020000,
    )
    with pytest.raises(FirmwareError, match="system part 2 must start at 0x08060000"):
        check_for_platform(parse_module(part2_at_part1), PHOTON)


def test_system_version_names() -> None:
    assert system_version_name(6) == "0.4.5"
    assert system_version_name(207) == "0.7.0"
    assert system_version_name(1512) == "1.5.2"
    assert system_version_name(2008) == "2.0.0"
    assert system_version_name(2302) == "2.3.1"
    assert system_version_name(3302) == "3.3.1"
    assert system_version_name(13) is None  # 0.5.0-rc.2 and 0.5.0: not in the table
    assert system_version_name(5) is None
    assert system_version_name(9999) is None
