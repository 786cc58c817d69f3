"""`ota_validation_result` (src/cyan/firmware/ota.py): the code Device OS 2.3.1's HAL_FLASH_End
would send back in its UpdateDone reply, check by check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyan.firmware import (
    FirmwareError,
    InstalledModule,
    ModuleDependency,
    ModuleFunction,
    OtaError,
    build_module,
    ota_validation_result,
    parse_module,
)
from tests.firmware.samples import (
    BOOTLOADER,
    BOOTLOADER_231,
    P1,
    PART1_DEPENDENCIES,
    PART2_DEPENDENCIES,
    PHOTON,
    RELEASE_231,
    SYSTEM_PART,
    system_part,
    user_part,
)

# A Photon on Device OS 2.3.1, as its describe would show it.
ON_231: dict[tuple[ModuleFunction, int], int | InstalledModule] = {
    (BOOTLOADER, 0): BOOTLOADER_231,
    (SYSTEM_PART, 1): InstalledModule(RELEASE_231, PART1_DEPENDENCIES),
    (SYSTEM_PART, 2): InstalledModule(RELEASE_231, PART2_DEPENDENCIES),
}
ON_045 = {(SYSTEM_PART, 1): 6, (SYSTEM_PART, 2): 6}


def test_the_codes_are_device_os_system_errors() -> None:
    # services/inc/system_error.h at v2.3.1
    assert {e.name: int(e) for e in OtaError} == {
        "OTA_MODULE_NOT_FOUND": -1300,
        "OTA_UNSUPPORTED_MODULE": -1310,
        "OTA_VALIDATION_FAILED": -1320,
        "OTA_INTEGRITY_CHECK_FAILED": -1330,
        "OTA_DEPENDENCY_CHECK_FAILED": -1340,
        "OTA_INVALID_ADDRESS": -1350,
        "OTA_INVALID_PLATFORM": -1360,
        "OTA_INVALID_FORMAT": -1370,
        "OTA_UPDATES_DISABLED": -1380,
        "OTA": -1390,
    }
    assert OtaError.OTA_INTEGRITY_CHECK_FAILED.message == "Module integrity check failed"


def test_tinker_is_accepted_by_its_own_platform(photon_tinker: bytes, p1_tinker: bytes) -> None:
    assert ota_validation_result(photon_tinker, PHOTON, ON_045) == 0
    assert ota_validation_result(p1_tinker, P1, ON_231) == 0
    # Plain (int, int) keys work as well as ModuleFunction ones.
    assert ota_validation_result(photon_tinker, PHOTON, {(4, 2): 6}) == 0  # type: ignore[dict-item]


def test_the_wrong_platform_is_refused(photon_tinker: bytes, p1_tinker: bytes) -> None:
    assert ota_validation_result(p1_tinker, PHOTON, ON_045) == OtaError.OTA_INVALID_PLATFORM
    assert ota_validation_result(photon_tinker, P1, ON_045) == -1360


def test_a_bad_crc_is_refused_before_anything_else(p1_tinker: bytes) -> None:
    damaged = bytearray(p1_tinker)
    damaged[1000] ^= 0x55
    # INTEGRITY comes first in validityResultToSystemError, before PLATFORM.
    for platform in (P1, PHOTON):
        result = ota_validation_result(bytes(damaged), platform, ON_045)
        assert result == OtaError.OTA_INTEGRITY_CHECK_FAILED


def test_a_truncated_file_fails_the_integrity_check(photon_tinker: bytes) -> None:
    # The missing tail reads as erased flash (0xFF), so the CRC cannot match.
    assert ota_validation_result(photon_tinker[:4000], PHOTON, ON_045) == -1330


def test_bytes_after_the_module_do_not_matter(photon_tinker: bytes) -> None:
    # The original server zero-pads the last chunk; the device reads the module's length only.
    assert ota_validation_result(photon_tinker + bytes(340), PHOTON, ON_045) == 0


def test_user_part_dependencies_are_optional_for_an_update() -> None:
    too_new = user_part(requires=3302)
    assert ota_validation_result(too_new, PHOTON, ON_231) == 0
    assert ota_validation_result(too_new, PHOTON, {}) == 0


def test_a_system_part_needing_a_newer_module_is_refused() -> None:
    needs_3000 = system_part(2, dependencies=(ModuleDependency(SYSTEM_PART, 1, 3000),))
    assert ota_validation_result(needs_3000, PHOTON, ON_231) == (
        OtaError.OTA_DEPENDENCY_CHECK_FAILED
    )
    assert ota_validation_result(system_part(2), PHOTON, ON_231) == 0
    # A module the device lacks fails the check, as does one the platform has no slot for.
    assert ota_validation_result(system_part(2), PHOTON, {}) == -1340
    on_part3 = system_part(1, dependencies=(ModuleDependency(SYSTEM_PART, 3, 1),))
    assert ota_validation_result(on_part3, PHOTON, ON_231) == -1340


def test_a_bootloader_dependency_in_second_place_is_skipped() -> None:
    # userDepsOptional also skips dependency2 when it is the bootloader (2.3.1 part 2: >= 1003).
    old_bootloader = dict(ON_231)
    old_bootloader[BOOTLOADER, 0] = 501
    assert ota_validation_result(system_part(2), PHOTON, old_bootloader) == 0
    first = system_part(2, dependencies=(ModuleDependency(BOOTLOADER, 0, 1003),))
    assert ota_validation_result(first, PHOTON, old_bootloader) == -1340


def test_a_system_part_must_keep_the_other_parts_dependencies() -> None:
    # Going back to 1.5.2's part 1 under 2.3.1's part 2, which needs part 1 >= 2302.
    old_part1 = system_part(1, 1512)
    assert ota_validation_result(old_part1, PHOTON, ON_231) == -1340
    # Given as bare versions, the installed parts' dependencies are unknown: not checked.
    versions_only = {(BOOTLOADER, 0): 1006, (SYSTEM_PART, 1): 2302, (SYSTEM_PART, 2): 2302}
    assert ota_validation_result(old_part1, PHOTON, versions_only) == 0
    # The part being replaced does not count against itself.
    assert ota_validation_result(system_part(2, 2303), PHOTON, ON_231) == 0


def test_the_upgrade_path_from_152_to_231_passes() -> None:
    on_152: dict[tuple[ModuleFunction, int], int | InstalledModule] = {
        (BOOTLOADER, 0): 502,
        (SYSTEM_PART, 1): InstalledModule(1512, PART1_DEPENDENCIES),
        (SYSTEM_PART, 2): InstalledModule(1512, (ModuleDependency(SYSTEM_PART, 1, 1512),)),
    }
    assert ota_validation_result(system_part(1), PHOTON, on_152) == 0
    after_part1 = {**on_152, (SYSTEM_PART, 1): InstalledModule(RELEASE_231, PART1_DEPENDENCIES)}
    assert ota_validation_result(system_part(2), PHOTON, after_part1) == 0


def test_modules_without_a_slot_are_not_found() -> None:
    part3 = build_module(
        platform_id=PHOTON,
        function=SYSTEM_PART,
        index=3,
        version=RELEASE_231,
        body=b"",
        start_address=0x08060000,
    )
    too_big = user_part(bytes(200 * 1024))  # its end lies past the user slot
    for data in (b"", b"\x00" * 1000, b"hello\n" * 100, part3, too_big):
        assert ota_validation_result(data, PHOTON, ON_231) == OtaError.OTA_MODULE_NOT_FOUND


def test_an_unknown_platform_is_refused(photon_tinker: bytes) -> None:
    with pytest.raises(FirmwareError, match="not of the Electron"):
        ota_validation_result(photon_tinker, 10, {})


def test_installed_module_of_a_parsed_module(photon_tinker: bytes) -> None:
    module = parse_module(photon_tinker)
    installed = InstalledModule.of(module)
    assert installed == InstalledModule(3, module.dependencies, module.sha256)


@given(st.binary(max_size=1024), st.sampled_from([PHOTON, P1]))
def test_random_bytes_get_a_code_never_an_exception(data: bytes, platform: int) -> None:
    result = ota_validation_result(data, platform, ON_231)
    assert result in set(OtaError) or result == 0
