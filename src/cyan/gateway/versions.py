"""Which Device OS a device runs, from the modules of its system describe."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cyan.firmware import system_version_name

# System parts ("s") and a monolithic firmware ("m", as Particle's Linux build reports its
# whole system in one module) carry the system version (device-os module_function_string).
_SYSTEM_FUNCTIONS = ("s", "m")


def system_module_of(modules: Iterable[dict[str, Any]]) -> int | None:
    """The system module version (e.g. 2302). A device mid-way between releases (part 1
    newer than part 2) runs what its oldest part allows, so the lowest counts, as the
    device itself reckons it (device-os hal/src/gcc/device_config.cpp)."""
    versions = [m.get("v") for m in modules if m.get("f") in _SYSTEM_FUNCTIONS]
    numbers = [v for v in versions if isinstance(v, int) and not isinstance(v, bool)]
    return min(numbers) if numbers else None


def release_name(module_version: int | None) -> str | None:
    """The release ("2.3.1"), or the module version when the release is not in the table."""
    if module_version is None:
        return None
    return system_version_name(module_version) or str(module_version)


def system_version_of(modules: Iterable[dict[str, Any]]) -> str | None:
    return release_name(system_module_of(modules))
