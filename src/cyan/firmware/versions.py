"""Which Device OS release a system module version is.

Rows from device-os ``system/system-versions.md`` (HEAD), checked one by one: the mapping is a
table, not a formula (1.5.2 is 1512, 2.0.0 is 2008). The releases Photons, P1s and the
Linux virtual platform of Particle's own tests run; a version not here is shown as its
number.
"""

from __future__ import annotations

_RELEASES = {
    6: "0.4.5",
    11: "0.4.9",
    102: "0.6.0",
    207: "0.7.0",
    1000: "1.0.0",
    1002: "1.0.1",
    1102: "1.1.0",
    1213: "1.2.1",
    1321: "1.3.1",
    1401: "1.4.0",
    1404: "1.4.2",
    1406: "1.4.4",
    1502: "1.5.0",
    1511: "1.5.1",
    1512: "1.5.2",
    2008: "2.0.0",
    2011: "2.0.1",
    2101: "2.1.0",
    2202: "2.2.0",
    2301: "2.3.0",
    2302: "2.3.1",
    3005: "3.0.0",
    3103: "3.1.0",
    3201: "3.2.0",
    3301: "3.3.0",
    3302: "3.3.1",  # the last row that lists Photon and P1
    4003: "4.0.0",
    5002: "5.0.0",
}


def system_version_name(module_version: int) -> str | None:
    """The release, e.g. "2.3.1" for system part version 2302; None if not in the table."""
    return _RELEASES.get(module_version)
