"""The firmware a virtual Photon holds: which module sits in which slot, as its system
describe reports it.

It starts as the release its profile copies (bootloader, two system parts, Tinker as the
user part) and changes only through an over-the-air update that the device accepted.
The change is kept in the device's key directory (firmware.json), as a Photon keeps its
flash across restarts. No ARM code runs: a new user part is reported (its SHA-256 in the
describe, as Device OS reports it), while the device keeps answering as Tinker.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyan.device.profiles import FirmwareProfile
from cyan.files import write_atomically
from cyan.firmware import (
    InstalledModule,
    Module,
    ModuleDependency,
    ModuleFunction,
    describe_modules,
    system_version_name,
)
from cyan.firmware.platforms import PHOTON

log = logging.getLogger("cyan.device")

FIRMWARE_FILE = "firmware.json"
# Tinker's user part module version in the 0.4.x – 2.x builds.
TINKER_MODULE_VERSION = 3
Slot = tuple[ModuleFunction, int]


def release_modules(profile: FirmwareProfile) -> dict[Slot, InstalledModule]:
    """What a Photon on ``profile``'s release holds, with the dependencies it was built with
    (device-os modules/shared/system_module_version.mk, part2_build.mk, user_build.mk)."""
    system, boot = profile.system_module_version, profile.bootloader_version
    part1_needs = (ModuleDependency(ModuleFunction.SYSTEM_PART, 2, 207),) if system > 207 else ()
    return {
        (ModuleFunction.BOOTLOADER, 0): InstalledModule(boot),
        (ModuleFunction.SYSTEM_PART, 1): InstalledModule(system, part1_needs),
        (ModuleFunction.SYSTEM_PART, 2): InstalledModule(
            system,
            (
                ModuleDependency(ModuleFunction.SYSTEM_PART, 1, system),
                ModuleDependency(ModuleFunction.BOOTLOADER, 0, boot),
            ),
        ),
        (ModuleFunction.USER_PART, 1): InstalledModule(
            TINKER_MODULE_VERSION,
            (ModuleDependency(ModuleFunction.SYSTEM_PART, 2, system),),
            hashlib.sha256(f"cyan virtual tinker {profile.version}".encode()).digest(),
        ),
    }


@dataclass
class Firmware:
    directory: Path | None  # None: nothing kept (a device made in memory)
    installed: dict[Slot, InstalledModule]

    @classmethod
    def load(cls, directory: Path | None, profile: FirmwareProfile) -> Firmware:
        installed = release_modules(profile)
        path = directory / FIRMWARE_FILE if directory is not None else None
        if path is not None and path.exists():
            try:
                installed.update(_decode(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring %s, which cannot be read: %s", path, exc)
        return cls(directory, installed)

    def apply(self, module: Module) -> None:
        """The device took ``module``: it sits in its slot from the next start on."""
        self.installed[(module.function, module.index)] = InstalledModule.of(module)
        if self.directory is not None:
            text = json.dumps(_encode(self.installed), indent=2) + "\n"
            write_atomically(self.directory / FIRMWARE_FILE, text.encode())

    def system_describe(self) -> dict[str, Any]:
        return {"p": PHOTON, "m": describe_modules(PHOTON, self.installed)}

    @property
    def system_version(self) -> str:
        version = self.installed[(ModuleFunction.SYSTEM_PART, 2)].version
        return system_version_name(version) or f"module version {version}"


def _encode(installed: dict[Slot, InstalledModule]) -> list[dict[str, Any]]:
    return [
        {
            "function": int(function),
            "index": index,
            "version": module.version,
            "dependencies": [[int(d.function), d.index, d.version] for d in module.dependencies],
            "sha256": module.sha256.hex() if module.sha256 is not None else None,
        }
        for (function, index), module in sorted(installed.items())
    ]


def _decode(entries: list[dict[str, Any]]) -> dict[Slot, InstalledModule]:
    found = {}
    for entry in entries:
        dependencies = tuple(
            ModuleDependency(ModuleFunction(f), int(i), int(v)) for f, i, v in entry["dependencies"]
        )
        sha = bytes.fromhex(entry["sha256"]) if entry.get("sha256") else None
        slot = (ModuleFunction(entry["function"]), int(entry["index"]))
        found[slot] = InstalledModule(int(entry["version"]), dependencies, sha)
    return found
