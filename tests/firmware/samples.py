"""Test modules: the real Tinker binaries particle-cli ships, and modules built like Device OS's.

The binaries come from the npm package that ./scripts/compat-setup installs; they are read in
place, never copied into the repository. A missing file fails the test: never skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cyan.firmware import ModuleDependency, ModuleFunction, build_module

KNOWN_APPS = (
    Path(__file__).resolve().parents[1] / "compat/node/node_modules/particle-cli/assets/knownApps"
)
PHOTON, P1 = 6, 8
SYSTEM_PART, USER_PART, BOOTLOADER = (
    ModuleFunction.SYSTEM_PART,
    ModuleFunction.USER_PART,
    ModuleFunction.BOOTLOADER,
)
# Device OS 2.3.1 as built (modules/shared/system_module_version.mk): both system parts 2302,
# part 1 needs part 2 >= 207 (0.7.0), part 2 needs part 1 >= 2302 and bootloader >= 1003.
RELEASE_231 = 2302
BOOTLOADER_231 = 1006
PART1_DEPENDENCIES = (ModuleDependency(SYSTEM_PART, 2, 207),)
PART2_DEPENDENCIES = (
    ModuleDependency(SYSTEM_PART, 1, RELEASE_231),
    ModuleDependency(BOOTLOADER, 0, 1003),
)


def tinker_binary(platform: str) -> bytes:
    """tinker-0.4.5-{photon,p1}.bin from particle-cli's assets."""
    path = KNOWN_APPS / platform / "tinker" / f"tinker-0.4.5-{platform}.bin"
    if not path.is_file():
        pytest.fail(
            f"{path} is missing: run ./scripts/compat-setup to install particle-cli",
            pytrace=False,
        )
    return path.read_bytes()


def user_part(
    body: bytes = b"app", *, version: int = 6, requires: int = RELEASE_231, platform: int = PHOTON
) -> bytes:
    """A user part needing system part 2 >= ``requires``, as user_build.mk links one."""
    return build_module(
        platform_id=platform,
        function=USER_PART,
        index=1,
        version=version,
        body=body,
        dependencies=[ModuleDependency(SYSTEM_PART, 2, requires)],
    )


def system_part(
    index: int,
    version: int = RELEASE_231,
    dependencies: tuple[ModuleDependency, ...] | None = None,
    *,
    platform: int = PHOTON,
    body: bytes = b"system",
) -> bytes:
    if dependencies is None:
        dependencies = PART1_DEPENDENCIES if index == 1 else PART2_DEPENDENCIES
    return build_module(
        platform_id=platform,
        function=SYSTEM_PART,
        index=index,
        version=version,
        body=body,
        dependencies=dependencies,
    )
