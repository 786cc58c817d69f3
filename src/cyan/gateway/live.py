"""What the gateway knows of a connected device, built from what the device said.

Pure functions from the Hello, the describe and the device's own reports to the
``LiveDevice`` the router and the API read.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Protocol, TypeVar

from cyan.cloud.types import LiveDevice
from cyan.gateway.versions import release_name, system_module_of
from cyan.protocol import messages, ota, payloads
from cyan.protocol.limits import device_limits

T = TypeVar("T")


class Share(Protocol):
    """One shared copy of an equal value (server.py ``Gateway.shared``)."""

    def __call__(self, value: T, /) -> T: ...


def self_describes(hello: messages.HelloInfo) -> bool:
    """Device OS 2.x+ posts its own describe once setup() ran (Hello flag 0x20)."""
    return bool(hello.flags & messages.HelloFlags.DEVICE_INITIATED_DESCRIBE)


def live_from_hello(
    device_id: str, remote_ip: str, hello: messages.HelloInfo, now: datetime
) -> LiveDevice:
    release = release_name(hello.system_module_version)
    return LiveDevice(
        device_id=device_id,
        remote_ip=remote_ip,
        connected_at=now,
        last_heard=now,
        platform_id=hello.platform_id,
        product_id=hello.product_id,
        product_firmware_version=hello.product_firmware_version,
        system_version=release,
        limits=device_limits(hello, None, release),
        self_describes=self_describes(hello),
    )


def with_description(
    live: LiveDevice,
    description: payloads.Description,
    hello: messages.HelloInfo,
    share: Share,
) -> LiveDevice:
    """``live`` after a describe; ``share`` keeps one copy of equal lists across a fleet."""
    if description.functions is not None:
        live = replace(live, functions=share(description.functions))
    if description.variables is not None:
        variables = {
            # A type code Cyan does not know is read as a string (payloads.py
            # decode_variable), so it is listed as one.
            name: payloads.VARIABLE_TYPE_NAMES.get(code, "string")
            for name, code in description.variables.items()
        }
        live = replace(live, variables=share(variables))
    modules = (description.system or {}).get("m")
    if isinstance(modules, list):
        found = tuple(m for m in modules if isinstance(m, dict))
        module_version = system_module_of(found)
        release = release_name(module_version)
        live = replace(
            live,
            modules=found,
            system_version=release or live.system_version,
            limits=device_limits(hello, module_version, release),
        )
    return live


def with_report(live: LiveDevice, info: messages.EventInfo) -> LiveDevice:
    """``live`` after one of the device's own reports (the OTA chunk size it takes)."""
    if info.name == ota.CHUNK_SIZE_EVENT and info.data:
        # Device OS announces the chunk size it takes; updates use it (protocol.md §7).
        # Read as at most 5 digits: int() of a longer string is no size and costs time.
        text = info.data[:6]
        size = int(text) if text.isdigit() and len(text) <= 5 else 0
        if 0 < size <= ota.MAX_CHUNK_BYTES:
            return replace(live, ota_chunk_bytes=size)
    return live
