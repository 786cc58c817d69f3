"""`parse_module` (src/cyan/firmware/module.py): the real Tinker binaries, and every way a file
can fail to be a module."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cyan.firmware
from cyan.firmware import (
    FirmwareError,
    Module,
    ModuleDependency,
    ModuleFunction,
    parse_module,
)
from tests.firmware.samples import P1, PHOTON, SYSTEM_PART, user_part

# ota-facts §2 "VERIFIED parsed values", read with Python and with binary-version-reader.
TINKER_SIZE = 5324
TINKER_END = 0x080A14C8


@pytest.mark.parametrize(
    ("fixture", "platform_id", "crc", "sha"),
    [
        (
            "photon_tinker",
            PHOTON,
            0x4A738441,
            "b3a6dcd529be70fbe24ee959c7305d58e3bc9a04acdce8f093c7a1f759097d09",
        ),
        (
            "p1_tinker",
            P1,
            0x70E7C48C,
            "e4da2ebfc575b274b77454827dab02799c87ed0342b046877c8052886fa89e08",
        ),
    ],
)
def test_tinker_045_parses_to_the_documented_values(
    request: pytest.FixtureRequest, fixture: str, platform_id: int, crc: int, sha: str
) -> None:
    data: bytes = request.getfixturevalue(fixture)
    module = parse_module(data)
    assert module == Module(
        size=TINKER_SIZE,
        prefix_offset=0,
        start_address=0x080A0000,
        end_address=TINKER_END,
        flags=0,
        version=3,
        platform_id=platform_id,
        function=ModuleFunction.USER_PART,
        index=1,
        dependencies=(ModuleDependency(ModuleFunction.SYSTEM_PART, 2, 6),),
        product_id=platform_id,
        product_version=2,
        sha256=bytes.fromhex(sha),
        crc32=crc,
    )
    # The stored SHA-256 covers everything before the SHA field (build/module.mk).
    assert module.sha256 == hashlib.sha256(data[:-38]).digest()
    assert module.sha256_hex == sha
    assert (module.name, module.describe_char) == ("user part 1", "u")
    assert zlib.crc32(data[:-4]) == crc


def test_the_module_is_frozen_and_slotted(photon_tinker: bytes) -> None:
    module = parse_module(photon_tinker)
    with pytest.raises(AttributeError):
        module.version = 4  # type: ignore[misc]
    assert not hasattr(module, "__dict__")


@pytest.mark.parametrize("keep", [0, 1, 3, 23, 24, 100, 4000, TINKER_SIZE - 4, TINKER_SIZE - 1])
def test_a_truncated_file_is_refused_and_says_so(photon_tinker: bytes, keep: int) -> None:
    with pytest.raises(FirmwareError) as caught:
        parse_module(photon_tinker[:keep])
    if keep >= 24:  # the prefix is whole: it says how long the module should be
        assert caught.value.message == (
            "the file is truncated: the module says it ends at 0x080A14C8 (5324 bytes) "
            f"but the file has {keep} bytes"
        )
    elif keep == 0:
        assert caught.value.message == "not a Particle module binary: the file is empty"
    else:
        assert caught.value.message.startswith("not a Particle module binary:")
        assert f"{keep} bytes is too short" in caught.value.message


def test_trailing_bytes_are_refused(photon_tinker: bytes) -> None:
    for extra in (b"\x00", b"\xff" * 4, os.urandom(512)):
        with pytest.raises(FirmwareError) as caught:
            parse_module(photon_tinker + extra)
        assert caught.value.message.startswith(f"the file has {len(extra)} bytes after")
        assert "0x080A14C8" in caught.value.message


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_one_changed_byte_anywhere_is_refused(photon_tinker: bytes, mask: int) -> None:
    for offset in range(len(photon_tinker)):
        damaged = bytearray(photon_tinker)
        damaged[offset] ^= mask
        with pytest.raises(FirmwareError) as caught:
            parse_module(bytes(damaged))
        # The start and end addresses (0..7) and the function and index (14, 15) decide
        # where and whether there is a module; every other byte is caught by the CRC.
        if offset >= 8 and offset not in (14, 15):
            assert caught.value.message.startswith("the CRC-32 does not match: stored 0x"), offset
            assert caught.value.message.endswith("(the file is corrupted)")


def test_the_crc_message_names_both_values(photon_tinker: bytes) -> None:
    damaged = photon_tinker[:100] + bytes([photon_tinker[100] ^ 1]) + photon_tinker[101:]
    with pytest.raises(FirmwareError) as caught:
        parse_module(damaged)
    computed = zlib.crc32(damaged[:-4])
    assert caught.value.message == (
        f"the CRC-32 does not match: stored 0x4A738441, computed 0x{computed:08X} "
        "(the file is corrupted)"
    )
    assert caught.value.fix


def test_random_bytes_a_text_file_and_tiny_files_are_not_modules() -> None:
    text = b"# Cyan\n\nA device cloud for Particle Photon, P1 and Core devices.\n" * 20
    for data, reason in [
        (b"", "the file is empty"),
        (text, "it is a text file"),
        ("h\u00e9llo".encode(), "it is a text file"),
        (b"\x00\x01\x02", "3 bytes is too short"),
        (bytes(200), "no module prefix found"),
        (b"\xff" * 5324, "no module prefix found"),
    ]:
        with pytest.raises(FirmwareError) as caught:
            parse_module(data)
        assert caught.value.message.startswith("not a Particle module binary: "), data[:8]
        assert reason in caught.value.message
        assert caught.value.fix is not None


@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_firmware_error(data: bytes) -> None:
    # Any other exception fails the test. (A random module that parses would be no bug.)
    with contextlib.suppress(FirmwareError):
        parse_module(data)


@given(st.binary(min_size=4, max_size=600), st.integers(0, 0x3FF))
def test_bytes_behind_a_real_prefix_only_ever_raise_firmware_error(junk: bytes, cut: int) -> None:
    prefix = bytes.fromhex("00000a08c8140a0800000300060005010402060000000000")
    with pytest.raises(FirmwareError):
        parse_module((prefix + junk)[: 24 + cut])


def test_a_suffix_size_other_than_40_or_36_is_refused() -> None:
    module = bytearray(user_part())
    struct.pack_into("<H", module, len(module) - 6, 62)  # a Gen3 suffix with extensions
    module[-4:] = zlib.crc32(module[:-4]).to_bytes(4, "big")
    with pytest.raises(FirmwareError, match="the module suffix is 62 bytes, not the 40"):
        parse_module(bytes(module))


def test_a_36_byte_suffix_has_no_product_fields() -> None:
    module = bytearray(user_part())
    struct.pack_into("<H", module, len(module) - 6, 36)
    module[-4:] = zlib.crc32(module[:-4]).to_bytes(4, "big")
    parsed = parse_module(bytes(module))
    assert (parsed.product_id, parsed.product_version) == (None, None)


def test_a_dependency_of_unknown_function_is_refused() -> None:
    module = bytearray(user_part())
    module[16] = 9  # dependency.module_function: ASSET exists only after v2.3.1
    module[-4:] = zlib.crc32(module[:-4]).to_bytes(4, "big")
    with pytest.raises(FirmwareError, match="unknown function 9"):
        parse_module(bytes(module))


def test_a_dependency_naming_no_module_is_left_out() -> None:
    module = parse_module(user_part())
    assert module.dependencies == (ModuleDependency(SYSTEM_PART, 2, 2302),)


def test_module_functions_have_describe_letters_and_names() -> None:
    assert "".join(f.describe_char for f in ModuleFunction) == "nrbmsu_ca"
    assert ModuleFunction.USER_PART.human_name == "user part"
    assert ModuleFunction.SYSTEM_PART.human_name == "system part"
    assert ModuleFunction.BOOTLOADER.human_name == "bootloader"
    assert ModuleDependency(SYSTEM_PART, 2, 6).name == "system part 2"
    assert ModuleDependency(ModuleFunction.BOOTLOADER, 0, 1003).name == "bootloader"


def test_every_public_name_is_exported_once() -> None:
    assert sorted(cyan.firmware.__all__) == sorted(set(cyan.firmware.__all__))
    for name in cyan.firmware.__all__:
        exported = getattr(cyan.firmware, name)
        if name not in ("PLATFORMS", "MAX_BINARY_BYTES"):  # values have no __module__
            assert exported.__module__.startswith("cyan.firmware."), name
