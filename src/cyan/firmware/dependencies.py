"""Whether a module's dependencies hold against the modules a device has installed.

A copy of ``validate_module_dependencies`` and ``validate_module_dependencies_full`` in
device-os ``hal/src/stm32f2xx/ota_flash_hal_stm32f2xx.cpp`` (v2.3.1), quirks included:
when the first dependency names no module the second is not looked at, and with
``user_optional`` a user part's dependencies and any bootloader dependency in second place
are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cyan.firmware.layout import NO_DEPENDENCY, ModuleDependency, ModuleFunction, RawDependency
from cyan.firmware.module import Module
from cyan.firmware.platforms import Platform


@dataclass(frozen=True, slots=True)
class InstalledModule:
    """A module in one of a device's slots, as its describe shows it."""

    version: int
    dependencies: tuple[ModuleDependency, ...] = ()  # in prefix order: first, then second
    sha256: bytes | None = None  # the suffix's SHA-256; the describe reports a user part's

    @classmethod
    def of(cls, module: Module) -> InstalledModule:
        return cls(module.version, module.dependencies, module.sha256)


# What the caller knows of each installed module: its version, or all of it.
Installed = Mapping[tuple[ModuleFunction, int], int | InstalledModule]


@dataclass(frozen=True, slots=True)
class Candidate:
    """The module whose dependencies are checked: the one in the OTA area, or an installed one."""

    function: int
    index: int
    version: int
    start_address: int
    dependency: RawDependency = NO_DEPENDENCY
    dependency2: RawDependency = NO_DEPENDENCY


def raw_dependencies(dependencies: Sequence[ModuleDependency]) -> list[RawDependency]:
    raw = [RawDependency(d.function, d.index, d.version) for d in dependencies]
    return raw + [NO_DEPENDENCY] * (2 - len(raw))


def dependencies_hold(
    module: Candidate,
    platform: Platform,
    installed: Installed,
    *,
    user_optional: bool,
    full: bool,
) -> bool:
    """``validate_module_dependencies(bounds, userOptional, fullDeps)``.

    A slot missing from ``installed`` counts as holding no module, so a dependency on it
    fails. (On a device the slot always holds something; erased flash would read as version
    0xFFFF and satisfy anything, which no update should rely on.)
    """
    first, second = module.dependency, module.dependency2
    valid = True
    if first.function != ModuleFunction.NONE and not (
        user_optional and module.function == ModuleFunction.USER_PART
    ):
        # "deliberately not transitive": each named module is looked up on its own.
        if platform.slot(first.function, first.index) is None:
            return False
        valid = _installed_version(installed, first) >= first.version
        skip_second = second.function == ModuleFunction.NONE or (
            second.function == ModuleFunction.BOOTLOADER and user_optional
        )
        if not skip_second:
            if platform.slot(second.function, second.index) is None:
                return False
            valid = valid and _installed_version(installed, second) >= second.version
    if full and valid:
        valid = _others_still_hold(module, platform, installed)
    return valid


def _installed_version(installed: Installed, dependency: RawDependency) -> int:
    found = installed.get((ModuleFunction(dependency.function), dependency.index))
    if found is None:
        return -1
    return found if isinstance(found, int) else found.version


def _others_still_hold(module: Candidate, platform: Platform, installed: Installed) -> bool:
    """``validate_module_dependencies_full``: replacing a system part must not break the
    other installed system parts' dependencies on it. Only installed modules given as
    `InstalledModule` are checked: a bare version carries no dependencies."""
    if module.function != ModuleFunction.SYSTEM_PART:
        return True
    for slot in platform.slots:
        other = installed.get((slot.function, slot.index))
        if slot.function != ModuleFunction.SYSTEM_PART or not isinstance(other, InstalledModule):
            continue
        if slot.start_address == module.start_address and slot.index == module.index:
            continue  # the module being replaced
        for dependency in other.dependencies:
            names_module = (dependency.function, dependency.index) == (
                module.function,
                module.index,
            )
            if names_module and module.version < dependency.version:
                return False
    return True
