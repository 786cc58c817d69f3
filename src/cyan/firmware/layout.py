"""The bytes of a Particle module binary: prefix, suffix, CRC, and where the prefix sits.

Layouts are those of Device OS v0.4.5 … v2.3.1 on the Photon and P1, checked against the
real Tinker binaries particle-cli ships; file paths below are in particle-iot/device-os at
tag v2.3.1. Everything is little-endian except the CRC, which the build writes big-endian.

A file, from its first byte to its last (N = file length = end address - start address + 4):

    [vector table, 0x184 bytes: system parts and bootloader only]
    prefix (module_info_t, 24 bytes)
    code …
    [0xFFFFFFFF padding, product_id u16, product_version u16]  4 + 4 bytes, see below
    suffix (module_info_suffix_t): reserved u16, SHA-256 (32 bytes), size u16
    CRC-32, 4 bytes, big-endian                                 starts at the end address
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class ModuleFunction(IntEnum):
    """What a module is: MOD_FUNC_* in device-os ``dynalib/inc/module_info.h`` (v2.3.1)."""

    NONE = 0
    RESOURCE = 1
    BOOTLOADER = 2
    MONO_FIRMWARE = 3
    SYSTEM_PART = 4
    USER_PART = 5
    SETTINGS = 6
    NCP_FIRMWARE = 7
    RADIO_STACK = 8

    @property
    def describe_char(self) -> str:
        """The "f" letter of the describe message (``system/inc/system_info.h``
        ``module_function_string``; SETTINGS has no case there, so it falls to "_")."""
        return _DESCRIBE_CHARS[self]

    @classmethod
    def of_describe_char(cls, char: str) -> ModuleFunction | None:
        """The function a describe's "f" letter names, or None for a letter it never uses."""
        return _BY_DESCRIBE_CHAR.get(char)

    @property
    def human_name(self) -> str:
        """What a person calls it: "user part", "system part", "bootloader" …"""
        return _HUMAN_NAMES[self]

    @property
    def in_describe(self) -> bool:
        """Whether a describe lists modules and dependencies of this function
        (``is_module_function_valid`` in ``system/inc/system_info.h``: not NONE, not SETTINGS)."""
        return self not in (ModuleFunction.NONE, ModuleFunction.SETTINGS)


_DESCRIBE_CHARS = dict(zip(ModuleFunction, "nrbmsu_ca", strict=True))
_BY_DESCRIBE_CHAR = {char: function for function, char in _DESCRIBE_CHARS.items()}
_HUMAN_NAMES = dict(
    zip(
        ModuleFunction,
        (
            "no module",
            "resource",
            "bootloader",
            "monolithic firmware",
            "system part",
            "user part",
            "settings",
            "NCP firmware",
            "radio stack",
        ),
        strict=True,
    )
)
# A module of these functions is known by its number ("system part 2"); the others by their
# kind alone ("bootloader") while their index is the usual 0.
_NUMBERED = (ModuleFunction.SYSTEM_PART, ModuleFunction.USER_PART)


def module_name(function: ModuleFunction, index: int) -> str:
    """The name people use: "user part 1", "system part 2", "bootloader" (index if not 0)."""
    if function in _NUMBERED or index != 0:
        return f"{function.human_name} {index}"
    return function.human_name


@dataclass(frozen=True, slots=True)
class ModuleDependency:
    """A module this one needs: at least ``version`` of the module (function, index)."""

    function: ModuleFunction
    index: int
    version: int

    @property
    def name(self) -> str:
        return module_name(self.function, self.index)


@dataclass(frozen=True, slots=True)
class RawDependency:
    """module_dependency_t as stored: function and index are whole bytes, though the header's
    comment says "lowest 4 bits" (the code compares the whole bytes)."""

    function: int
    index: int
    version: int


NO_DEPENDENCY = RawDependency(0, 0, 0)

# module_info_t (dynalib/inc/module_info.h, static asserts give each offset): start address
# u32 @0, end address u32 @4 (exclusive; the CRC starts there), reserved u8 @8, flags u8 @9,
# module_version u16 @10, platform_id u16 @12, function u8 @14, index u8 @15, dependency
# (function u8, index u8, version u16) @16, dependency2 @20.
_PREFIX = struct.Struct("<IIBBHHBBBBHBBH")
PREFIX_BYTES = _PREFIX.size  # 24
assert PREFIX_BYTES == 24

# The device looks for the prefix at the start of the region, or 0x184 bytes in when the
# first word looks like an initial stack pointer in SRAM: FLASH_ModuleInfo in
# platform/MCU/STM32F2xx/SPARK_Firmware_Driver/src/flash_mal.c, APP_START_MASK in
# .../inc/flash_mal.h. System parts and the bootloader begin with a 0x184-byte vector table
# (modules/shared/stm32f2xx/part1_vtor_module.ld,
# modules/photon/system-part2/module_system_part2_export.ld,
# build/arm/linker/linker_stm32f2xx_common.ld); user parts begin with their prefix.
VECTOR_TABLE_BYTES = 0x184
APP_START_MASK = 0x2FF10000
SRAM_BASE = 0x20000000

# module_info_suffix_t: reserved u16, sha[32], size u16 = 36 bytes. The linker puts
# product_id and product_version (u16 each) just before it and the size field counts them:
# 40 (build/arm/linker/module_end.ld, dynalib/inc/module_info.inc MODULE_INFO_SUFFIX_EXTRA).
# When the app declares a product, two more SHORT(0xffff) precede those (module_end.ld).
SUFFIX_BYTES = 36
SUFFIX_WITH_PRODUCT_BYTES = 40
SUFFIX_SIZES = (SUFFIX_BYTES, SUFFIX_WITH_PRODUCT_BYTES)
PRODUCT_PADDING = b"\xff\xff\xff\xff"
SHA256_BYTES = 32
CRC_BYTES = 4
# From the end of the file: the CRC (4), the size field (2), the SHA-256 (32), reserved (2),
# product_version (2), product_id (2). build/module.mk hashes all but the last 38 bytes
# (CRC_BLOCK_LEN) and writes the SHA-256 there.
SHA256_FROM_END = CRC_BYTES + 2 + SHA256_BYTES  # 38: the SHA covers file[0 : N - 38]
SUFFIX_SIZE_FROM_END = CRC_BYTES + 2
PRODUCT_FROM_END = SHA256_FROM_END + 2 + 4
NO_PRODUCT = 0xFFFF  # what sits in product_id/version when the app declares none


@dataclass(frozen=True, slots=True)
class Prefix:
    """module_info_t as the device reads it: raw numbers, nothing checked."""

    start_address: int
    end_address: int
    reserved: int
    flags: int
    version: int
    platform_id: int
    function: int
    index: int
    dependency: RawDependency = NO_DEPENDENCY
    dependency2: RawDependency = NO_DEPENDENCY

    @property
    def module_bytes(self) -> int:
        """module_length(): end - start as a u32, the bytes the CRC covers."""
        return (self.end_address - self.start_address) & 0xFFFFFFFF

    def pack(self) -> bytes:
        return _PREFIX.pack(
            self.start_address,
            self.end_address,
            self.reserved,
            self.flags,
            self.version,
            self.platform_id,
            self.function,
            self.index,
            self.dependency.function,
            self.dependency.index,
            self.dependency.version,
            self.dependency2.function,
            self.dependency2.index,
            self.dependency2.version,
        )

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> Prefix:
        """The prefix at ``offset``; ``data`` must hold its 24 bytes."""
        (start, end, reserved, flags, version, platform_id, function, index, *deps) = (
            _PREFIX.unpack_from(data, offset)
        )
        return cls(
            start,
            end,
            reserved,
            flags,
            version,
            platform_id,
            function,
            index,
            RawDependency(deps[0], deps[1], deps[2]),
            RawDependency(deps[3], deps[4], deps[5]),
        )


def prefix_offset(data: bytes) -> int:
    """Where the device looks for the prefix (0 or 0x184); ``data`` must hold 4 bytes."""
    (first_word,) = struct.unpack_from("<I", data)
    return VECTOR_TABLE_BYTES if first_word & APP_START_MASK == SRAM_BASE else 0


def stored_crc32(data: bytes, module_bytes: int) -> int:
    """The CRC word after ``module_bytes`` bytes, read big-endian as the build wrote it
    (build/module.mk writes the crc32 tool's hex; flash_mal.c FLASH_VerifyCRC32 __REVs the
    little-endian word). The device's CRC is the standard reflected CRC-32: zlib.crc32."""
    return int.from_bytes(data[module_bytes : module_bytes + CRC_BYTES], "big")
