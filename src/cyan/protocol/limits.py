"""What a device can take, by the Device OS it runs: argument, name and event sizes.

The numbers are device-os ``communication/.../protocol_defs.h`` at each tag, read one by
one (protocol.md §7.1 saw them on the wire):

| system module version      | release           | argument | function/variable name | event data |
|----------------------------|-------------------|----------|------------------------|------------|
| < 303                      | ≤ 0.8.0-rc.3      | 63       | 12                     | 255        |
| 303 … 3003                 | 0.8.0-rc.4 … 3.0.0-rc.1 | 622 | 64                  | 622        |
| ≥ 3004, Gen 2 (Photon, P1, Electron) | 3.0.0-rc.2 … | 864 | 64                   | 864        |
| ≥ 3004, other platforms    | 3.0.0-rc.2 …      | 1024     | 64                     | 1024       |

Before 0.8.0-rc.4 the argument buffer is ``MAX_FUNCTION_ARG_LENGTH = 64`` bytes including
its NUL (functions.h), so 63 bytes fit; names are ``MAX_FUNCTION_KEY_LENGTH =
MAX_VARIABLE_KEY_LENGTH = 12`` (the describe truncates longer ones). From 0.8.0-rc.4 the
buffer is 622 + 1. Particle documents 255 bytes of event data before 0.8.0 (the firmware
itself only bounds it by its 800-byte message buffer). Event names are 64 bytes in every
release.

Over the limit the firmware answers a function call with a coded ACK 4.00 that carries no
token, and then calls the function anyway with the argument cut short (functions.h): the
cloud would report a result for an argument nobody sent. Bigger messages than the receive
buffer crash 2.3.1 or drop the session (§7.1). So the cloud refuses them before sending.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cyan.protocol.messages import HelloFlags, HelloInfo

# 0.8.0-rc.4: the first module version with the 622-byte limits.
FIRST_LARGE_LIMITS_MODULE = 303
# 3.0.0-rc.2: the first with 864 bytes on Gen 2 and 1024 on Gen 3 (HAL_PLATFORM_GEN >= 3).
FIRST_GEN_SPLIT_MODULE = 3004
# Core 0, Photon 6, P1 8, Electron 10 (hal/shared/platforms.h): Gen 1 and 2.
GEN2_PLATFORMS = frozenset({0, 6, 8, 10})

EVENT_NAME_BYTES = 64


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    function_argument_bytes: int
    name_bytes: int  # function and variable names
    event_name_bytes: int
    event_data_bytes: int
    # How the limits were learned, for error messages: "Device OS 0.7.0", "Device OS older
    # than 0.8 (its Hello)", …
    basis: str


SMALL = DeviceLimits(63, 12, EVENT_NAME_BYTES, 255, "Device OS older than 0.8")
MEDIUM = DeviceLimits(622, 64, EVENT_NAME_BYTES, 622, "Device OS 0.8 to 2.x")
GEN2_LARGE = DeviceLimits(864, 64, EVENT_NAME_BYTES, 864, "Device OS 3 or later on Gen 2")
LARGE = DeviceLimits(1024, 64, EVENT_NAME_BYTES, 1024, "Device OS 3 or later")


def limits_for_module(module_version: int, platform_id: int) -> DeviceLimits:
    """The limits of a device whose system module has ``module_version`` (e.g. 2302)."""
    if module_version < FIRST_LARGE_LIMITS_MODULE:
        return SMALL
    if module_version < FIRST_GEN_SPLIT_MODULE:
        return MEDIUM
    return GEN2_LARGE if platform_id in GEN2_PLATFORMS else LARGE


def device_limits(
    hello: HelloInfo, system_module_version: int | None, release: str | None
) -> DeviceLimits:
    """The limits for a connected device, from the best evidence there is.

    The system module version (system describe, or the Hello of Device OS ≥ 3) is exact.
    Without it, the Hello's flags tell the two Photon eras apart: 0.8.0 added the
    diagnostics flag (protocol.cpp ``hello``: ``flags |= 2``), which 0.7.0 and the Core
    never send, and both of those take the small limits.
    """
    version = system_module_version or hello.system_module_version
    if version:
        named = f"Device OS {release}" if release else f"system module version {version}"
        return replace(limits_for_module(version, hello.platform_id), basis=named)
    if hello.flags & HelloFlags.DIAGNOSTICS:
        return replace(MEDIUM, basis="Device OS 0.8 or later (its Hello)")
    return replace(SMALL, basis="Device OS older than 0.8 (its Hello)")
