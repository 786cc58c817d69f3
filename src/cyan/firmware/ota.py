"""Would a Photon accept this module over the air? The answer Device OS 2.3.1 gives.

After the last chunk the device runs ``HAL_FLASH_End`` (device-os
``hal/src/stm32f2xx/ota_flash_hal_stm32f2xx.cpp`` at v2.3.1) and sends its result back in
the UpdateDone reply: ``fetch_module`` (``hal/src/stm32/ota_module.cpp``) reads the module
from the OTA area, then ``validityResultToSystemError`` turns the first failed check into a
system error code (``services/inc/system_error.h``).
"""

from __future__ import annotations

import zlib
from enum import IntEnum, IntFlag

from cyan.firmware.dependencies import Candidate, Installed, dependencies_hold
from cyan.firmware.layout import CRC_BYTES, Prefix, prefix_offset, stored_crc32
from cyan.firmware.platforms import known_platform

# module_ota in hal/src/photon/ota_module_bounds.c: 256 KB of scratch at 0x080C0000, the
# last 256 KB of the 1 MB flash. UpdateBegin erases it, so bytes past the file read 0xFF.
OTA_AREA_START = 0x080C0000
OTA_AREA_BYTES = 0x40000
ERASED = b"\xff"


class OtaError(IntEnum):
    """The OTA range of system_error_t (services/inc/system_error.h at v2.3.1): the C name is
    SYSTEM_ERROR_ + the member's name. 0 means the module was accepted."""

    OTA_MODULE_NOT_FOUND = -1300
    OTA_UNSUPPORTED_MODULE = -1310
    OTA_VALIDATION_FAILED = -1320
    OTA_INTEGRITY_CHECK_FAILED = -1330
    OTA_DEPENDENCY_CHECK_FAILED = -1340
    OTA_INVALID_ADDRESS = -1350
    OTA_INVALID_PLATFORM = -1360
    OTA_INVALID_FORMAT = -1370
    OTA_UPDATES_DISABLED = -1380
    OTA = -1390

    @property
    def message(self) -> str:
        """The device's own text for the code (the same header)."""
        return _MESSAGES[self]


_MESSAGES = dict(
    zip(
        OtaError,
        (
            "Module not found",
            "Unsupported module",
            "Module validation failed",
            "Module integrity check failed",
            "Module dependency check failed",
            "Invalid module address",
            "Invalid module platform",
            "Invalid module format",
            "Firmware updates are disabled",
            "Firmware update error",
        ),
        strict=True,
    )
)


class ValidationFlag(IntFlag):
    """module_validation_flags_t (hal/inc/ota_flash_hal.h); the describe's "vc" and "vv"."""

    INTEGRITY = 1 << 1
    DEPENDENCIES = 1 << 2
    RANGE = 1 << 3
    PLATFORM = 1 << 4
    PRODUCT = 1 << 5
    DEPENDENCIES_FULL = 1 << 6


# fetch_module always checks these three and adds what its caller asks for.
ALWAYS_CHECKED = ValidationFlag.RANGE | ValidationFlag.DEPENDENCIES | ValidationFlag.PLATFORM


def ota_validation_result(data: bytes, platform_id: int, installed: Installed) -> int:
    """0 if a device of ``platform_id`` would accept ``data`` as an OTA update, else the
    `OtaError` its ``HAL_FLASH_End`` returns.

    ``installed`` maps (function, index) to the version of the module in that slot, or to an
    `InstalledModule`, whose dependencies then also count: a new system part must still
    satisfy them (DEPENDENCIES_FULL). Like the device, this reads only the module's own
    length: bytes after it (the server's zero-padded last chunk) do not matter, and neither
    does the SHA-256. The start address is checked later, when the bootloader copies the
    module (``FLASH_CheckCopyMemory`` in flash_mal.c); that is not part of this answer
    (`check_for_platform` refuses such a module before it is sent).
    """
    platform = known_platform(platform_id)
    # The device reads its OTA area, not the file: what the file leaves unwritten is erased.
    area = data[:OTA_AREA_BYTES].ljust(OTA_AREA_BYTES, ERASED)
    prefix = Prefix.unpack(area, prefix_offset(area))
    slot = platform.slot(prefix.function, prefix.index)
    # RANGE: the end address inside the slot of the module's own function and index, both
    # ends inclusive (in_range). When it fails, fetch_module returns false: "not found".
    if slot is None or not slot.start_address <= prefix.end_address <= slot.end_address:
        return OtaError.OTA_MODULE_NOT_FOUND
    checked = ALWAYS_CHECKED | ValidationFlag.INTEGRITY | ValidationFlag.DEPENDENCIES_FULL
    passed = ValidationFlag.RANGE
    if prefix.platform_id == platform_id:
        passed |= ValidationFlag.PLATFORM
    candidate = Candidate(
        prefix.function,
        prefix.index,
        prefix.version,
        prefix.start_address,
        prefix.dependency,
        prefix.dependency2,
    )
    if dependencies_hold(candidate, platform, installed, user_optional=True, full=True):
        passed |= ValidationFlag.DEPENDENCIES | ValidationFlag.DEPENDENCIES_FULL
    if _crc_holds(area, prefix.module_bytes):
        passed |= ValidationFlag.INTEGRITY
    return validity_to_error(passed, checked)


def _crc_holds(area: bytes, module_bytes: int) -> bool:
    """FLASH_VerifyCRC32 over the module's length. A CRC word past the OTA area would lie
    past the end of flash (0x08100000): counted as a failed check, not read."""
    if module_bytes == 0 or module_bytes + CRC_BYTES > len(area):
        return False
    return zlib.crc32(area[:module_bytes]) == stored_crc32(area, module_bytes)


def validity_to_error(passed: ValidationFlag, checked: ValidationFlag) -> int:
    """``validityResultToSystemError``: the first failed check, in the device's order."""
    if passed == checked:
        return 0
    order = (
        (ValidationFlag.INTEGRITY, OtaError.OTA_INTEGRITY_CHECK_FAILED),
        (ValidationFlag.DEPENDENCIES, OtaError.OTA_DEPENDENCY_CHECK_FAILED),
        (ValidationFlag.DEPENDENCIES_FULL, OtaError.OTA_DEPENDENCY_CHECK_FAILED),
        (ValidationFlag.RANGE, OtaError.OTA_INVALID_ADDRESS),
        (ValidationFlag.PLATFORM, OtaError.OTA_INVALID_PLATFORM),
    )
    for flag, error in order:
        if flag in checked and flag not in passed:
            return error
    return OtaError.OTA_VALIDATION_FAILED
