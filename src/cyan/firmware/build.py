"""Making module binaries: what a Device OS build writes, for tests, benchmarks and demos.

The layout is the one `parse_module` reads (`cyan.firmware.layout`); the checksums are the
ones ``build/module.mk`` patches in: the SHA-256 of everything before the SHA field, then the
CRC-32 of everything before the CRC, written big-endian.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence

from cyan.firmware.errors import FirmwareError
from cyan.firmware.layout import (
    APP_START_MASK,
    CRC_BYTES,
    NO_DEPENDENCY,
    NO_PRODUCT,
    PREFIX_BYTES,
    PRODUCT_PADDING,
    SRAM_BASE,
    SUFFIX_BYTES,
    SUFFIX_WITH_PRODUCT_BYTES,
    VECTOR_TABLE_BYTES,
    ModuleDependency,
    ModuleFunction,
    Prefix,
    RawDependency,
)
from cyan.firmware.platforms import known_platform

# Modules that boot on their own begin with a Cortex-M vector table whose first word is the
# initial stack pointer; 0x20020000 is the top of the STM32F205's 128 KB of SRAM.
_VECTOR_TABLE_FUNCTIONS = (
    ModuleFunction.BOOTLOADER,
    ModuleFunction.SYSTEM_PART,
    ModuleFunction.MONO_FIRMWARE,
)
INITIAL_STACK_POINTER = 0x20020000


def build_module(
    *,
    platform_id: int,
    function: ModuleFunction,
    index: int,
    version: int,
    body: bytes,
    dependencies: Sequence[ModuleDependency] = (),
    product_id: int | None = None,
    product_version: int | None = None,
    start_address: int | None = None,
) -> bytes:
    """A complete module binary around ``body`` that `parse_module` accepts.

    ``start_address`` defaults to the start of the platform's slot for (function, index).
    Bootloaders, system parts and monolithic firmware get a 0x184-byte vector table before
    the prefix, as their linker scripts put it. Without a product the 4 bytes before the
    suffix are the linker's 0xFFFF pair (build/arm/linker/module_end.ld); with one, that pair
    is padding and the product id and version follow (a missing half stays 0xFFFF).
    Nothing here checks that the module fits its slot: `check_for_platform` does.
    """
    function = ModuleFunction(function)
    if function == ModuleFunction.NONE:
        raise FirmwareError("a module needs a function; NONE marks an empty slot")
    if start_address is None:
        slot = known_platform(platform_id).slot(function, index)
        if slot is None:
            raise FirmwareError(
                f"the {known_platform(platform_id).name} has no slot for "
                f"{function.human_name} {index}; give start_address"
            )
        start_address = slot.start_address
    _check_fits("platform id", platform_id, 16)
    _check_fits("module index", index, 8)
    _check_fits("module version", version, 16)
    _check_fits("start address", start_address, 32)
    if len(dependencies) > 2:
        raise FirmwareError(f"a module prefix holds 2 dependencies, not {len(dependencies)}")
    raw = [_raw_dependency(d) for d in dependencies]
    raw += [NO_DEPENDENCY] * (2 - len(raw))

    if function in _VECTOR_TABLE_FUNCTIONS:
        head = struct.pack("<I", INITIAL_STACK_POINTER).ljust(VECTOR_TABLE_BYTES, b"\x00")
    elif start_address & APP_START_MASK == SRAM_BASE:
        raise FirmwareError(
            f"a module starting at 0x{start_address:08X} looks like a vector table to the "
            "device, which would then look for the prefix 0x184 bytes in"
        )
    else:
        head = b""
    product = struct.pack(
        "<HH",
        NO_PRODUCT if product_id is None else product_id,
        NO_PRODUCT if product_version is None else product_version,
    )
    if product_id is not None or product_version is not None:
        product = PRODUCT_PADDING + product
    module_bytes = len(head) + PREFIX_BYTES + len(body) + len(product) + SUFFIX_BYTES
    _check_fits("end address", start_address + module_bytes, 32)
    prefix = Prefix(
        start_address=start_address,
        end_address=start_address + module_bytes,
        reserved=0,
        flags=0,
        version=version,
        platform_id=platform_id,
        function=function,
        index=index,
        dependency=raw[0],
        dependency2=raw[1],
    )
    # module_info_suffix_t: reserved u16 = 0, then the SHA over all bytes so far, then size.
    signed = head + prefix.pack() + body + product + b"\x00\x00"
    module = signed + hashlib.sha256(signed).digest()
    module += struct.pack("<H", SUFFIX_WITH_PRODUCT_BYTES)
    return module + zlib.crc32(module).to_bytes(CRC_BYTES, "big")


def _raw_dependency(dependency: ModuleDependency) -> RawDependency:
    _check_fits("dependency index", dependency.index, 8)
    _check_fits("dependency version", dependency.version, 16)
    return RawDependency(ModuleFunction(dependency.function), dependency.index, dependency.version)


def _check_fits(what: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise FirmwareError(f"{what} {value} does not fit the prefix's {bits}-bit field")
