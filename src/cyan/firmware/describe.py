"""The "m" array of a Photon's describe message: one entry per installed module.

``system_info_to_json`` and ``module_info_to_json`` in device-os ``system/src/system_info.cpp``
(v2.2.0 and later; up to v2.1.0 each dependency object also ended with "_": ""). The modules
come from ``HAL_System_Info``, which runs ``fetch_module`` on each slot with the INTEGRITY
check and user-part dependencies required (ota_flash_hal_stm32f2xx.cpp).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cyan.firmware.dependencies import (
    Candidate,
    InstalledModule,
    dependencies_hold,
    raw_dependencies,
)
from cyan.firmware.layout import ModuleFunction
from cyan.firmware.ota import ALWAYS_CHECKED, ValidationFlag
from cyan.firmware.platforms import known_platform

_CHECKED = ALWAYS_CHECKED | ValidationFlag.INTEGRITY  # "vc": 30


def describe_modules(
    platform_id: int, installed: Mapping[tuple[ModuleFunction, int], InstalledModule]
) -> list[dict[str, Any]]:
    """The describe's "m" entries for a device of ``platform_id`` holding ``installed``.

    Keys in the device's order: s (the slot's size, not the module's), l (store), vc, vv,
    u (user parts: the suffix's SHA-256 in uppercase hex), f, n (the index as a string), v,
    d (dependencies that name a module). Slots not in ``installed`` are left out, as the
    device leaves out an empty slot. The installed modules are taken to sit in their slots,
    built for this platform and intact, so "vv" differs from "vc" (30) only when a
    dependency does not hold: 26. A user part without a known SHA-256 gets no "u". The
    factory copy of the user part is not modelled.
    """
    platform = known_platform(platform_id)
    entries = []
    for slot in platform.slots:
        module = installed.get((slot.function, slot.index))
        if module is None:
            continue
        first, second = raw_dependencies(module.dependencies)
        candidate = Candidate(
            slot.function, slot.index, module.version, slot.start_address, first, second
        )
        passed = ValidationFlag.RANGE | ValidationFlag.PLATFORM | ValidationFlag.INTEGRITY
        if dependencies_hold(candidate, platform, installed, user_optional=False, full=False):
            passed |= ValidationFlag.DEPENDENCIES
        entry: dict[str, Any] = {
            "s": slot.maximum_size,
            "l": slot.store.describe_char,
            "vc": int(_CHECKED),
            "vv": int(passed),
        }
        if slot.function == ModuleFunction.USER_PART and module.sha256 is not None:
            entry["u"] = module.sha256.hex().upper()
        entry["f"] = slot.function.describe_char
        entry["n"] = str(slot.index)
        entry["v"] = module.version
        entry["d"] = [
            {"f": d.function.describe_char, "n": str(d.index), "v": d.version}
            for d in module.dependencies
            if ModuleFunction(d.function).in_describe
        ]
        entries.append(entry)
    return entries
