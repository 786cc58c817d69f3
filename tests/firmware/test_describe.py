"""`describe_modules` (src/cyan/firmware/describe.py): the describe's "m" array as a Photon on
Device OS 2.2.0+ sends it (system/src/system_info.cpp)."""

from __future__ import annotations

import hashlib
import json

import pytest

from cyan.firmware import (
    FirmwareError,
    InstalledModule,
    ModuleDependency,
    ModuleFunction,
    describe_modules,
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
    USER_PART,
)

APP_SHA = hashlib.sha256(b"an app").digest()


def photon_on_231(**user: InstalledModule) -> dict[tuple[ModuleFunction, int], InstalledModule]:
    return {
        (BOOTLOADER, 0): InstalledModule(BOOTLOADER_231),
        (SYSTEM_PART, 1): InstalledModule(RELEASE_231, PART1_DEPENDENCIES),
        (SYSTEM_PART, 2): InstalledModule(RELEASE_231, PART2_DEPENDENCIES),
        (USER_PART, 1): user.get(
            "app", InstalledModule(6, (ModuleDependency(SYSTEM_PART, 2, RELEASE_231),), APP_SHA)
        ),
    }


def test_a_photon_on_231_with_an_app() -> None:
    assert describe_modules(PHOTON, photon_on_231()) == [
        {"s": 16384, "l": "m", "vc": 30, "vv": 30, "f": "b", "n": "0", "v": 1006, "d": []},
        {
            "s": 262144,
            "l": "m",
            "vc": 30,
            "vv": 30,
            "f": "s",
            "n": "1",
            "v": 2302,
            "d": [{"f": "s", "n": "2", "v": 207}],
        },
        {
            "s": 262144,
            "l": "m",
            "vc": 30,
            "vv": 30,
            "f": "s",
            "n": "2",
            "v": 2302,
            "d": [{"f": "s", "n": "1", "v": 2302}, {"f": "b", "n": "0", "v": 1003}],
        },
        {
            "s": 131072,
            "l": "m",
            "vc": 30,
            "vv": 30,
            "u": APP_SHA.hex().upper(),
            "f": "u",
            "n": "1",
            "v": 6,
            "d": [{"f": "s", "n": "2", "v": 2302}],
        },
    ]


def test_keys_come_in_the_devices_order_and_survive_json() -> None:
    entries = describe_modules(P1, photon_on_231())
    assert [list(entry) for entry in entries] == [
        ["s", "l", "vc", "vv", "f", "n", "v", "d"],
        ["s", "l", "vc", "vv", "f", "n", "v", "d"],
        ["s", "l", "vc", "vv", "f", "n", "v", "d"],
        ["s", "l", "vc", "vv", "u", "f", "n", "v", "d"],
    ]
    assert json.loads(json.dumps(entries)) == entries
    assert all("_" not in dependency for entry in entries for dependency in entry["d"])


def test_a_dependency_that_does_not_hold_clears_the_dependencies_bit() -> None:
    # binary-version-reader specs/describes/safe_mode_1.json.js: part 2 (v7) needs part 1 v7.
    installed = {
        (BOOTLOADER, 0): InstalledModule(4),
        (SYSTEM_PART, 1): InstalledModule(6),
        (SYSTEM_PART, 2): InstalledModule(7, (ModuleDependency(SYSTEM_PART, 1, 7),)),
    }
    assert [entry["vv"] for entry in describe_modules(PHOTON, installed)] == [30, 30, 26]


def test_the_user_part_dependency_is_checked_in_a_describe() -> None:
    app_for_331 = InstalledModule(6, (ModuleDependency(SYSTEM_PART, 2, 3302),), APP_SHA)
    entries = describe_modules(PHOTON, photon_on_231(app=app_for_331))
    assert entries[-1]["vv"] == 26  # the device boots into safe mode


def test_the_tinker_binary_as_installed(photon_tinker: bytes) -> None:
    tinker = parse_module(photon_tinker)
    installed = {(SYSTEM_PART, 2): InstalledModule(6), (USER_PART, 1): InstalledModule.of(tinker)}
    (part2, user) = describe_modules(PHOTON, installed)
    assert part2["d"] == []
    assert user["u"] == "B3A6DCD529BE70FBE24EE959C7305D58E3BC9A04ACDCE8F093C7A1F759097D09"
    assert (user["v"], user["d"], user["vv"]) == (3, [{"f": "s", "n": "2", "v": 6}], 30)


def test_empty_slots_unknown_hashes_and_unknown_platforms() -> None:
    assert describe_modules(PHOTON, {}) == []
    (user,) = describe_modules(PHOTON, {(USER_PART, 1): InstalledModule(1)})
    assert "u" not in user
    assert user["vv"] == 30
    with pytest.raises(FirmwareError, match="Electron"):
        describe_modules(10, {})
