"""Reading a module binary: `parse_module` checks it the way a Photon would, and says why not.

Byte layouts: `cyan.firmware.layout` (device-os ``dynalib/inc/module_info.h``,
``build/arm/linker/module_end.ld``, ``build/module.mk``).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from cyan.firmware.errors import FirmwareError
from cyan.firmware.layout import (
    CRC_BYTES,
    PREFIX_BYTES,
    PRODUCT_FROM_END,
    SHA256_BYTES,
    SHA256_FROM_END,
    SUFFIX_BYTES,
    SUFFIX_SIZE_FROM_END,
    SUFFIX_SIZES,
    SUFFIX_WITH_PRODUCT_BYTES,
    ModuleDependency,
    ModuleFunction,
    Prefix,
    RawDependency,
    module_name,
    prefix_offset,
    stored_crc32,
)

# Far above the 1 MB of a Photon's flash, yet loose enough for other platforms' modules: a
# prefix that claims more is not a prefix.
MAX_MODULE_BYTES = 16 * 1024 * 1024
_NOT_A_MODULE_FIX = (
    "Give a module binary built for a Photon or P1 (.bin from particle compile or "
    "Workbench), not an ELF, hex, zip or text file."
)
_GET_A_NEW_COPY = "Download or build the binary again; this copy is damaged."


@dataclass(frozen=True, slots=True)
class Module:
    """What a module binary says about itself (prefix and suffix), once checked."""

    size: int  # bytes in the file: end_address - start_address + 4 (the CRC)
    prefix_offset: int  # 0, or 0x184 after a vector table
    start_address: int
    end_address: int  # exclusive: the CRC starts here
    flags: int
    version: int  # module_version: e.g. 2302 for a 2.3.1 system part
    platform_id: int
    function: ModuleFunction
    index: int
    dependencies: tuple[ModuleDependency, ...]  # only the ones that name a module
    product_id: int | None  # None when the suffix is the 36-byte one without product fields
    product_version: int | None
    sha256: bytes  # as stored; the device does not check it, it reports it
    crc32: int  # as stored, and verified

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    @property
    def describe_char(self) -> str:
        return self.function.describe_char

    @property
    def name(self) -> str:
        """The name people use: "user part 1", "system part 2", "bootloader"."""
        return module_name(self.function, self.index)


def parse_module(data: bytes) -> Module:
    """Check a whole module binary and return what it says; FirmwareError says why not.

    Checked: a plausible prefix where the device looks for it, a file length that matches the
    prefix (neither truncated nor with trailing bytes), the CRC-32, the suffix size field.
    Not checked, like the device: the SHA-256 (exposed as ``sha256``). Not checked here: the
    platform and the flash slot (`check_for_platform`).
    """
    prefix, offset = _find_prefix(data)
    expected = prefix.module_bytes + CRC_BYTES
    if len(data) < expected:
        raise FirmwareError(
            f"the file is truncated: the module says it ends at 0x{prefix.end_address:08X} "
            f"({expected} bytes) but the file has {len(data)} bytes",
            fix=_GET_A_NEW_COPY,
        )
    if len(data) > expected:
        raise FirmwareError(
            f"the file has {len(data) - expected} bytes after the module's end at "
            f"0x{prefix.end_address:08X} (the module is {expected} bytes, the file "
            f"{len(data)}): not a single module binary",
            fix="Give the module's own .bin; this file has more data appended.",
        )
    stored, computed = stored_crc32(data, prefix.module_bytes), zlib.crc32(data[:-CRC_BYTES])
    if stored != computed:
        raise FirmwareError(
            f"the CRC-32 does not match: stored 0x{stored:08X}, computed 0x{computed:08X} "
            "(the file is corrupted)",
            fix=_GET_A_NEW_COPY,
        )
    (suffix_size,) = struct.unpack_from("<H", data, len(data) - SUFFIX_SIZE_FROM_END)
    if suffix_size not in SUFFIX_SIZES:
        # Later Gen3/Gen4 modules add TLV extensions to the suffix (particle-cli's P2 Tinker has
        # 62 bytes); Photon and P1 modules never do.
        raise FirmwareError(
            f"the module suffix is {suffix_size} bytes, not the {SUFFIX_WITH_PRODUCT_BYTES} "
            f"(or {SUFFIX_BYTES}) of a Photon or P1 module",
            fix=_NOT_A_MODULE_FIX,
        )
    product_id = product_version = None
    if suffix_size == SUFFIX_WITH_PRODUCT_BYTES:
        product_id, product_version = struct.unpack_from("<HH", data, len(data) - PRODUCT_FROM_END)
    sha_at = len(data) - SHA256_FROM_END
    return Module(
        size=len(data),
        prefix_offset=offset,
        start_address=prefix.start_address,
        end_address=prefix.end_address,
        flags=prefix.flags,
        version=prefix.version,
        platform_id=prefix.platform_id,
        function=ModuleFunction(prefix.function),
        index=prefix.index,
        dependencies=_dependencies(prefix.dependency, prefix.dependency2),
        product_id=product_id,
        product_version=product_version,
        sha256=data[sha_at : sha_at + SHA256_BYTES],
        crc32=stored,
    )


def _find_prefix(data: bytes) -> tuple[Prefix, int]:
    """The prefix where the device looks (0 or 0x184), if it looks like one."""
    if not data:
        raise FirmwareError(
            "not a Particle module binary: the file is empty", fix=_NOT_A_MODULE_FIX
        )
    if _looks_like_text(data):
        raise FirmwareError(
            "not a Particle module binary: it is a text file", fix=_NOT_A_MODULE_FIX
        )
    offset = prefix_offset(data) if len(data) >= 4 else 0
    smallest = offset + PREFIX_BYTES + SUFFIX_BYTES + CRC_BYTES
    if len(data) < offset + PREFIX_BYTES:
        raise FirmwareError(
            f"not a Particle module binary: {len(data)} bytes is too short for a module "
            f"(at least {smallest}: prefix, suffix and CRC)",
            fix=_NOT_A_MODULE_FIX,
        )
    prefix = Prefix.unpack(data, offset)
    if not _plausible(prefix, offset):
        raise FirmwareError(
            f"not a Particle module binary: no module prefix found (looked at offset {offset:#x})",
            fix=_NOT_A_MODULE_FIX,
        )
    return prefix, offset


def _plausible(prefix: Prefix, offset: int) -> bool:
    known = ModuleFunction.NONE < prefix.function <= max(ModuleFunction)
    holds_itself = offset + PREFIX_BYTES + SUFFIX_BYTES <= prefix.module_bytes
    return (
        known
        and prefix.end_address > prefix.start_address
        and holds_itself
        and prefix.module_bytes <= MAX_MODULE_BYTES
    )


def _looks_like_text(data: bytes) -> bool:
    # Every module starts with an address or a stack pointer, so its first bytes hold a 0x08
    # or 0x20 and usually a NUL: no module decodes as NUL-free UTF-8 from end to end.
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _dependencies(*raw: RawDependency) -> tuple[ModuleDependency, ...]:
    found = []
    for dependency in raw:
        if dependency.function == ModuleFunction.NONE:
            continue  # the device skips these (ota_flash_hal_stm32f2xx.cpp)
        if dependency.function > max(ModuleFunction):
            raise FirmwareError(
                f"the module depends on a module of unknown function {dependency.function}",
                fix=_NOT_A_MODULE_FIX,
            )
        function = ModuleFunction(dependency.function)
        found.append(ModuleDependency(function, dependency.index, dependency.version))
    return tuple(found)
