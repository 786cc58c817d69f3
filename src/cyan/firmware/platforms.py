"""Where modules live on a Photon and a P1, and whether a module belongs there.

Slots: device-os ``hal/src/photon/ota_module_bounds.c`` (v2.3.1; the same numbers in v0.7.0,
v1.5.2, and in v0.4.5's ``hal/src/photon/ota_flash_hal.cpp``). The P1 builds with
PLATFORM_NAME=photon (``build/platform-id.mk``), so it shares the Photon's map.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cyan.firmware.errors import FirmwareError
from cyan.firmware.layout import CRC_BYTES, ModuleFunction, module_name
from cyan.firmware.module import Module

PHOTON, P1 = 6, 8
CORE = 0  # the Spark Core: the TCP protocol too, its own flash map (not served here)
# The biggest binary a Photon or P1 takes over the air: what Device OS announces in
# spark/hardware/max_binary on connect (protocol.md §7).
MAX_BINARY_BYTES = 2 * 1024 * 1024
_OTHER_PLATFORM_NAMES = {CORE: "Core", 10: "Electron"}


class ModuleStore(IntEnum):
    """Which copy a slot holds (module_store_t in ``dynalib/inc/module_info.h``)."""

    MAIN = 0
    FACTORY = 1
    BACKUP = 2
    SCRATCHPAD = 3

    @property
    def describe_char(self) -> str:
        """The describe's "l" (``system/inc/system_info.h`` module_store_string)."""
        return "mfbt"[self]


@dataclass(frozen=True, slots=True)
class ModuleSlot:
    """module_bounds_t: where the module (function, index) goes in internal flash."""

    function: ModuleFunction
    index: int
    start_address: int
    maximum_size: int
    store: ModuleStore = ModuleStore.MAIN

    @property
    def end_address(self) -> int:
        """Exclusive: the first address after the slot."""
        return self.start_address + self.maximum_size

    @property
    def name(self) -> str:
        return module_name(self.function, self.index)

    @property
    def label(self) -> str:
        """How a sentence names the slot: "user", "system part 2", "bootloader"."""
        return "user" if self.function == ModuleFunction.USER_PART else self.name


@dataclass(frozen=True, slots=True)
class Platform:
    id: int
    name: str
    slots: tuple[ModuleSlot, ...]  # in module_bounds[] order: the describe lists them so

    def slot(self, function: int, index: int) -> ModuleSlot | None:
        """find_module_bounds: the slot of (function, index), if this platform has one."""
        for slot in self.slots:
            if slot.function == function and slot.index == index:
                return slot
        return None


# The modular build's module_bounds[] minus the factory copy of the user part (0x080E0000,
# store FACTORY), which an OTA update never targets. The OTA scratch area is in `cyan.firmware.ota`.
_GEN2_SLOTS = (
    ModuleSlot(ModuleFunction.BOOTLOADER, 0, 0x08000000, 0x4000),
    ModuleSlot(ModuleFunction.SYSTEM_PART, 1, 0x08020000, 0x40000),
    ModuleSlot(ModuleFunction.SYSTEM_PART, 2, 0x08060000, 0x40000),
    ModuleSlot(ModuleFunction.USER_PART, 1, 0x080A0000, 0x20000),
)
PLATFORMS: dict[int, Platform] = {
    PHOTON: Platform(PHOTON, "Photon", _GEN2_SLOTS),
    P1: Platform(P1, "P1", _GEN2_SLOTS),
}


def platform_name(platform_id: int) -> str:
    """The platform's name: "Photon", "P1", "Core", "Electron", else "platform N"."""
    if platform_id in PLATFORMS:
        return PLATFORMS[platform_id].name
    return _OTHER_PLATFORM_NAMES.get(platform_id, f"platform {platform_id}")


def platform_label(platform_id: int) -> str:
    """For sentences: "the Photon (platform 6)", or "platform 12" when Cyan has no name."""
    name = platform_name(platform_id)
    return name if name.startswith("platform ") else f"the {name} (platform {platform_id})"


def known_platform(platform_id: int) -> Platform:
    """The platform's flash map; FirmwareError for a platform Cyan has none for."""
    try:
        return PLATFORMS[platform_id]
    except KeyError:
        known = " and ".join(f"{p.name} ({p.id})" for p in PLATFORMS.values())
        raise FirmwareError(
            f"Cyan knows the flash layout of the {known} only, not of {platform_label(platform_id)}"
        ) from None


def check_for_platform(module: Module, platform_id: int) -> None:
    """Refuse a module that does not belong in a device of ``platform_id``.

    The platform must match and the module must fill exactly one slot of that platform: it
    starts at the slot's start and, with its CRC, ends inside it. The last is stricter than
    the device by 4 bytes: ``fetch_module`` (hal/src/stm32/ota_module.cpp) lets the end
    address equal the slot's end, which would put the CRC into the next slot; the linker
    never builds such a module (the CRC section is inside APP_FLASH).
    """
    platform = known_platform(platform_id)
    if module.platform_id != platform_id:
        raise FirmwareError(
            f"this binary is for {platform_label(module.platform_id)}, "
            f"not {platform_label(platform_id)}",
            fix=f"Build it for the {platform.name} (particle compile {platform.name.lower()}).",
        )
    slot = platform.slot(module.function, module.index)
    if slot is None:
        slots = ", ".join(s.name for s in platform.slots)
        raise FirmwareError(
            f"the {platform.name} has no slot for {module.name}: its modules are {slots}"
        )
    if module.start_address != slot.start_address:
        raise FirmwareError(
            f"{module.name} must start at 0x{slot.start_address:08X} on the {platform.name}, "
            f"but this one starts at 0x{module.start_address:08X}"
        )
    if module.end_address + CRC_BYTES > slot.end_address:
        raise FirmwareError(
            f"a {module.function.human_name} of {module.size} bytes does not fit the "
            f"{platform.name}'s {slot.maximum_size // 1024} KB {slot.label} slot",
            fix=f"Make it smaller: the slot holds {slot.maximum_size} bytes, CRC included.",
        )
