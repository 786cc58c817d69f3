"""`build_module` (src/cyan/firmware/build.py): what it builds parses back, byte layout included."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyan.firmware import (
    PLATFORMS,
    FirmwareError,
    ModuleDependency,
    ModuleFunction,
    build_module,
    check_for_platform,
    parse_module,
)
from tests.firmware.samples import (
    BOOTLOADER,
    P1,
    PART2_DEPENDENCIES,
    PHOTON,
    SYSTEM_PART,
    USER_PART,
    system_part,
    user_part,
)

USER_SLOT_BYTES = 128 * 1024
SYSTEM_SLOT_BYTES = 256 * 1024
# prefix 24, product 4 (the linker's 0xFFFF pair), suffix 36, CRC 4
USER_PART_OVERHEAD = 24 + 4 + 36 + 4
SYSTEM_PART_OVERHEAD = 0x184 + USER_PART_OVERHEAD


def test_a_user_part_has_its_prefix_first_and_round_trips() -> None:
    data = user_part(b"\x01\x02\x03" * 100, version=7, requires=1512)
    module = parse_module(data)
    assert module.prefix_offset == 0
    assert (module.start_address, module.end_address) == (0x080A0000, 0x080A0000 + len(data) - 4)
    assert (module.function, module.index, module.version) == (USER_PART, 1, 7)
    assert module.dependencies == (ModuleDependency(SYSTEM_PART, 2, 1512),)
    assert (module.product_id, module.product_version) == (0xFFFF, 0xFFFF)
    assert data[24 : 24 + 300] == b"\x01\x02\x03" * 100
    assert module.sha256 == hashlib.sha256(data[:-38]).digest()
    assert data[-4:] == zlib.crc32(data[:-4]).to_bytes(4, "big")
    assert struct.unpack_from("<H", data, len(data) - 6) == (40,)
    check_for_platform(module, PHOTON)


def test_a_system_part_starts_with_a_vector_table() -> None:
    data = system_part(2)
    # The first word is an initial stack pointer in SRAM: the device then looks 0x184 in.
    assert struct.unpack_from("<I", data) == (0x20020000,)
    module = parse_module(data)
    assert module.prefix_offset == 0x184
    assert module.start_address == 0x08060000
    assert module.dependencies == PART2_DEPENDENCIES
    assert (module.name, module.version) == ("system part 2", 2302)
    check_for_platform(module, PHOTON)


def test_a_bootloader_starts_with_a_vector_table() -> None:
    data = build_module(
        platform_id=P1, function=BOOTLOADER, index=0, version=1006, body=b"boot" * 1000
    )
    module = parse_module(data)
    assert (module.prefix_offset, module.start_address) == (0x184, 0x08000000)
    assert (module.name, module.platform_id, module.dependencies) == ("bootloader", P1, ())
    check_for_platform(module, P1)


def test_full_size_user_and_system_parts_fit_their_slots_exactly() -> None:
    user = user_part(bytes(USER_SLOT_BYTES - USER_PART_OVERHEAD))
    assert len(user) == USER_SLOT_BYTES
    check_for_platform(parse_module(user), PHOTON)
    part1 = system_part(1, body=bytes(SYSTEM_SLOT_BYTES - SYSTEM_PART_OVERHEAD))
    assert len(part1) == SYSTEM_SLOT_BYTES
    module = parse_module(part1)
    assert module.end_address + 4 == PLATFORMS[PHOTON].slots[1].end_address
    check_for_platform(module, PHOTON)


def test_a_product_id_and_version_go_before_the_suffix() -> None:
    data = build_module(
        platform_id=PHOTON,
        function=USER_PART,
        index=1,
        version=1,
        body=b"x",
        product_id=4242,
        product_version=17,
    )
    module = parse_module(data)
    assert (module.product_id, module.product_version) == (4242, 17)
    # module_end.ld: the 0xFFFF pair becomes padding in front of the declared product.
    assert data[-48:-40] == b"\xff\xff\xff\xff" + struct.pack("<HH", 4242, 17)


@given(
    body=st.binary(max_size=4096),
    function=st.sampled_from([USER_PART, SYSTEM_PART]),
    version=st.integers(0, 0xFFFF),
    platform_id=st.sampled_from([PHOTON, P1]),
    dependency_version=st.integers(0, 0xFFFF),
    product=st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))),
)
def test_build_then_parse_round_trips(
    body: bytes,
    function: ModuleFunction,
    version: int,
    platform_id: int,
    dependency_version: int,
    product: tuple[int, int] | None,
) -> None:
    dependencies = (ModuleDependency(SYSTEM_PART, 2, dependency_version),)
    index = 1 if function == USER_PART else 2
    data = build_module(
        platform_id=platform_id,
        function=function,
        index=index,
        version=version,
        body=body,
        dependencies=dependencies,
        product_id=None if product is None else product[0],
        product_version=None if product is None else product[1],
    )
    module = parse_module(data)
    assert (module.function, module.index, module.version) == (function, index, version)
    assert (module.platform_id, module.dependencies, module.size) == (
        platform_id,
        dependencies,
        len(data),
    )
    assert (module.product_id, module.product_version) == (product or (0xFFFF, 0xFFFF))
    assert module.sha256 == hashlib.sha256(data[:-38]).digest()
    assert body in data
    check_for_platform(module, platform_id)


def test_a_slot_the_platform_lacks_needs_an_explicit_address() -> None:
    with pytest.raises(FirmwareError, match="the Photon has no slot for system part 3"):
        system_part(3, dependencies=())
    with pytest.raises(FirmwareError, match="Cyan knows the flash layout of the Photon"):
        system_part(1, platform=10)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("version", 0x10000, "module version 65536 does not fit the prefix's 16-bit field"),
        ("index", 256, "module index 256 does not fit"),
        ("platform_id", -1, "platform id -1 does not fit"),
        ("start_address", 0xFFFFFFF0, "end address"),
    ],
)
def test_values_that_do_not_fit_the_prefix_are_refused(
    field: str, value: int, message: str
) -> None:
    fields = {"platform_id": PHOTON, "index": 1, "version": 1, "start_address": 0x080A0000}
    fields[field] = value
    with pytest.raises(FirmwareError, match=message):
        build_module(
            platform_id=fields["platform_id"],
            function=USER_PART,
            index=fields["index"],
            version=fields["version"],
            body=b"",
            start_address=fields["start_address"],
        )


def test_other_refusals() -> None:
    with pytest.raises(FirmwareError, match="NONE marks an empty slot"):
        build_module(platform_id=PHOTON, function=ModuleFunction.NONE, index=0, version=0, body=b"")
    with pytest.raises(FirmwareError, match="holds 2 dependencies, not 3"):
        build_module(
            platform_id=PHOTON,
            function=USER_PART,
            index=1,
            version=1,
            body=b"",
            dependencies=[ModuleDependency(SYSTEM_PART, 2, 1)] * 3,
        )
    with pytest.raises(FirmwareError, match="looks like a vector table"):
        build_module(
            platform_id=PHOTON,
            function=USER_PART,
            index=1,
            version=1,
            body=b"",
            start_address=0x20000000,
        )
