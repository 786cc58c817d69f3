"""Particle module binaries (Photon and P1): read, check, build, and judge as a device would.

Pure: bytes in, facts or a `FirmwareError` out. Layouts and the device behaviour they copy
come from particle-iot/device-os; each module cites its files (at tag v2.3.1 unless a
module says otherwise).

- `errors`: `FirmwareError`, a `CyanError`.
- `layout`: the prefix, suffix and CRC; `ModuleFunction`, `ModuleDependency`.
- `module`: `parse_module` and `Module`.
- `build`: `build_module`, for tests and benchmarks.
- `platforms`: the flash slots of each platform, `check_for_platform`.
- `versions`: module version → Device OS release.
- `ota`: `ota_validation_result`, the device's verdict on an OTA update.
- `dependencies`: the device's dependency checks, `InstalledModule`.
- `describe`: the describe message's "m" array for installed modules.
"""

from __future__ import annotations

from cyan.firmware.build import build_module
from cyan.firmware.dependencies import InstalledModule
from cyan.firmware.describe import describe_modules
from cyan.firmware.errors import FirmwareError
from cyan.firmware.layout import ModuleDependency, ModuleFunction
from cyan.firmware.module import Module, parse_module
from cyan.firmware.ota import OtaError, ValidationFlag, ota_validation_result
from cyan.firmware.platforms import (
    MAX_BINARY_BYTES,
    PLATFORMS,
    ModuleSlot,
    ModuleStore,
    Platform,
    check_for_platform,
    platform_name,
)
from cyan.firmware.versions import system_version_name

__all__ = [
    "MAX_BINARY_BYTES",
    "PLATFORMS",
    "FirmwareError",
    "InstalledModule",
    "Module",
    "ModuleDependency",
    "ModuleFunction",
    "ModuleSlot",
    "ModuleStore",
    "OtaError",
    "Platform",
    "ValidationFlag",
    "build_module",
    "check_for_platform",
    "describe_modules",
    "ota_validation_result",
    "parse_module",
    "platform_name",
    "system_version_name",
]
