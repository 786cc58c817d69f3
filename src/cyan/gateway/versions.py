"""Which Device OS a device runs, from the modules of its system describe."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cyan.firmware import system_version_name


def system_version_of(modules: Iterable[dict[str, Any]]) -> str | None:
    """The release of its system parts ("2.3.1"), or the module version when the release
    is not in the table. A device mid-way between releases (part 1 newer than part 2)
    runs what its oldest part allows, so the lowest version counts."""
    versions = [m.get("v") for m in modules if m.get("f") == "s"]
    numbers = [v for v in versions if isinstance(v, int)]
    if not numbers:
        return None
    lowest = min(numbers)
    return system_version_name(lowest) or str(lowest)
