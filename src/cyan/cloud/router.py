"""The router: which device is connected where, and the road to it.

The gateway attaches a ``DeviceLink`` for every device that finishes its
handshake and detaches it when the connection ends; the API reaches devices
only through here (design.md). With one node this is all in memory; a bus
between nodes slots in behind the same methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from cyan.cloud.errors import (
    BadArgument,
    DeviceOffline,
    FunctionNotFound,
    VariableNotFound,
)
from cyan.cloud.types import CloudEvent, LiveDevice, VariableValue

log = logging.getLogger(__name__)

# device-os refuses longer arguments with 4.00 (protocol.md §4.6, MAX_FUNCTION_ARG_LENGTH).
MAX_FUNCTION_ARGUMENT_BYTES = 1024
MAX_NAME_BYTES = 64


class DeviceLink(Protocol):
    """One live device connection as the gateway offers it to the cloud."""

    @property
    def live(self) -> LiveDevice: ...

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int: ...

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue: ...

    async def signal(self, on: bool, timeout_s: float) -> None: ...

    def deliver_event(self, event: CloudEvent) -> None:
        """Send the event to the device if one of its subscriptions matches; never blocks."""

    def close(self, reason: str) -> None: ...


EventListener = Callable[[CloudEvent], None]


class Router:
    def __init__(
        self, *, function_timeout_s: float = 15.0, variable_timeout_s: float = 15.0
    ) -> None:
        self._links: dict[str, DeviceLink] = {}
        self._listeners: list[EventListener] = []
        self.function_timeout_s = function_timeout_s
        self.variable_timeout_s = variable_timeout_s

    # -- presence ---------------------------------------------------------------------------

    def attach(self, device_id: str, link: DeviceLink) -> DeviceLink | None:
        """Register a live connection; returns the one it replaces, which the caller closes."""
        old = self._links.get(device_id)
        self._links[device_id] = link
        return old if old is not link else None

    def detach(self, device_id: str, link: DeviceLink) -> bool:
        """Forget ``link`` unless a newer connection of the same device replaced it."""
        if self._links.get(device_id) is link:
            del self._links[device_id]
            return True
        return False

    def live(self, device_id: str) -> LiveDevice | None:
        link = self._links.get(device_id)
        return link.live if link is not None else None

    def online_ids(self) -> list[str]:
        return list(self._links)

    def _link(self, device_id: str) -> DeviceLink:
        link = self._links.get(device_id)
        if link is None:
            raise DeviceOffline("Device is offline", fix="Check that the device is breathing cyan.")
        return link

    # -- requests ---------------------------------------------------------------------------

    async def call_function(self, device_id: str, name: str, argument: str) -> int:
        link = self._link(device_id)
        # A device acknowledges an unknown function and then never answers (protocol.md §7),
        # so the name is checked against its describe before anything is sent.
        if name not in link.live.functions:
            raise FunctionNotFound(f"Function {name} not found")
        if len(argument.encode()) > MAX_FUNCTION_ARGUMENT_BYTES:
            raise BadArgument(
                f"Function argument is {len(argument.encode())} bytes; "
                f"a device accepts at most {MAX_FUNCTION_ARGUMENT_BYTES}"
            )
        return await link.call_function(name, argument, self.function_timeout_s)

    async def get_variable(self, device_id: str, name: str) -> VariableValue:
        link = self._link(device_id)
        if name not in link.live.variables:
            raise VariableNotFound("Variable not found")
        return await link.get_variable(name, self.variable_timeout_s)

    async def signal(self, device_id: str, on: bool) -> None:
        await self._link(device_id).signal(on, self.function_timeout_s)

    # -- events -----------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def publish(self, event: CloudEvent) -> None:
        """Fan an event out to listeners (the SSE bus) and to subscribed devices."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one broken listener must not stop delivery to the others
                log.exception("event listener failed for %s", event.name)
        for device_id, link in list(self._links.items()):
            if device_id != event.device_id:
                link.deliver_event(event)
