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

from cyan.bus.events import CloudEvent
from cyan.cloud.errors import (
    BadArgument,
    DeviceOffline,
    FunctionNotFound,
    VariableNotFound,
)
from cyan.cloud.types import (
    FlashOptions,
    LiveDevice,
    UpdateProgress,
    VariableValue,
)
from cyan.protocol.limits import DeviceLimits

log = logging.getLogger(__name__)

# Events a device sends under these prefixes are reports to the cloud (spark/hardware/…,
# particle/device/updates/…, sent by Device OS on every connect): they reach the owner's
# event streams but no other device (the original server treats "spark" names as system
# events, protocol.md §4.8).
SYSTEM_EVENT_PREFIXES = ("spark/", "particle/")


class DeviceLink(Protocol):
    """One live device connection as the gateway offers it to the cloud."""

    @property
    def live(self) -> LiveDevice: ...

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int: ...

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue: ...

    async def signal(self, on: bool, timeout_s: float) -> None: ...

    async def describe_again(self) -> LiveDevice:
        """Ask the device for its functions and variables now (at most one describe in
        flight, and only a few per minute), and return what it is known to have after."""

    async def flash(
        self, data: bytes, options: FlashOptions, on_progress: Callable[[UpdateProgress], None]
    ) -> None:
        """Send a firmware binary; returns once the device took it, raises CloudError if not."""

    def deliver_event(self, event: CloudEvent) -> None:
        """Send the event to the device if one of its subscriptions matches; never blocks."""

    def set_owner(self, owner_id: int | None) -> None:
        """The device changed hands: its events and subscriptions follow the new owner."""

    def close(self, reason: str) -> None: ...


EventListener = Callable[[CloudEvent], None]
RegistrationListener = Callable[[str], None]


class Router:
    def __init__(
        self, *, function_timeout_s: float = 15.0, variable_timeout_s: float = 15.0
    ) -> None:
        self._links: dict[str, DeviceLink] = {}
        self._listeners: list[EventListener] = []
        # prefix -> ids of devices subscribed to it, so an event visits only the devices
        # that asked for it instead of every connected one.
        self._registration_listeners: list[RegistrationListener] = []
        self._subscribers: dict[str, set[str]] = {}
        self._prefixes_of: dict[str, set[str]] = {}
        self.function_timeout_s = function_timeout_s
        self.variable_timeout_s = variable_timeout_s

    # -- presence ---------------------------------------------------------------------------

    def attach(self, device_id: str, link: DeviceLink) -> DeviceLink | None:
        """Register a live connection; returns the one it replaces, which the caller closes."""
        old = self._links.get(device_id)
        self._links[device_id] = link
        if old is not link:
            self._unsubscribe_all(device_id)  # the new connection subscribes anew
        return old if old is not link else None

    def detach(self, device_id: str, link: DeviceLink) -> bool:
        """Forget ``link`` unless a newer connection of the same device replaced it."""
        if self._links.get(device_id) is link:
            del self._links[device_id]
            self._unsubscribe_all(device_id)
            return True
        return False

    def on_registration_changed(self, listener: RegistrationListener) -> None:
        self._registration_listeners.append(listener)

    def registration_changed(self, device_id: str, owner_id: int | None) -> None:
        """A device's owner or key changed in the store (claim, release, new key)."""
        link = self._links.get(device_id)
        if link is not None:
            link.set_owner(owner_id)
        for listener in self._registration_listeners:
            listener(device_id)

    def subscribe(self, device_id: str, prefix: str) -> None:
        """Note that a connected device wants events starting with ``prefix``."""
        self._subscribers.setdefault(prefix, set()).add(device_id)
        self._prefixes_of.setdefault(device_id, set()).add(prefix)

    def subscriptions(self, device_id: str) -> frozenset[str]:
        """The prefixes a connected device subscribed to."""
        return frozenset(self._prefixes_of.get(device_id, ()))

    def _unsubscribe_all(self, device_id: str) -> None:
        for prefix in self._prefixes_of.pop(device_id, ()):
            subscribers = self._subscribers.get(prefix)
            if subscribers is not None:
                subscribers.discard(device_id)
                if not subscribers:
                    del self._subscribers[prefix]

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
        live = link.live  # a fresh copy with each read (gateway/session.py): read once
        limits = live.limits
        _check_name("Function", name, limits)
        size = len(argument.encode())
        if size > limits.function_argument_bytes:
            # Firmware cuts a longer argument short and calls the function anyway, with no
            # error the cloud could see (protocol/limits.py): refuse it before it is sent.
            raise BadArgument(
                f"Function argument is {size} bytes; this device ({limits.basis}) takes "
                f"at most {limits.function_argument_bytes}"
            )
        # A device acknowledges an unknown function and then never answers (protocol.md §7),
        # so the name is checked against its describe before anything is sent; a name the
        # describe lacks may have been registered since (setup() runs after the connect on
        # Device OS ≤ 1.5, which never describes itself): ask once more before a 404.
        if name not in live.functions and name not in (await link.describe_again()).functions:
            raise FunctionNotFound(f"Function {name} not found")
        return await link.call_function(name, argument, self.function_timeout_s)

    async def get_variable(self, device_id: str, name: str) -> VariableValue:
        link = self._link(device_id)
        live = link.live
        _check_name("Variable", name, live.limits)
        if name not in live.variables and name not in (await link.describe_again()).variables:
            raise VariableNotFound("Variable not found")
        return await link.get_variable(name, self.variable_timeout_s)

    async def describe_again(self, device_id: str) -> LiveDevice:
        return await self._link(device_id).describe_again()

    async def signal(self, device_id: str, on: bool) -> None:
        await self._link(device_id).signal(on, self.function_timeout_s)

    async def flash(
        self,
        device_id: str,
        data: bytes,
        options: FlashOptions,
        on_progress: Callable[[UpdateProgress], None],
    ) -> None:
        await self._link(device_id).flash(data, options, on_progress)

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
        if event.device_id is not None and event.name.startswith(SYSTEM_EVENT_PREFIXES):
            return
        # Look up each beginning of the name (at most its length + 1, 64 bytes or so), not
        # each prefix anyone subscribed to: the cost does not grow with the subscriptions.
        targets: set[str] = set()
        name, subscribers = event.name, self._subscribers
        for end in range(len(name) + 1):
            device_ids = subscribers.get(name[:end])
            if device_ids:
                targets |= device_ids
        targets.discard(event.device_id or "")
        for device_id in targets:
            link = self._links.get(device_id)
            if link is None:
                continue
            try:
                link.deliver_event(event)  # checks scope and owner
            except Exception:  # one device's broken delivery must not stop the others'
                log.exception("delivering %s to device %s failed", event.name, device_id)


def _check_name(what: str, name: str, limits: DeviceLimits) -> None:
    size = len(name.encode())
    if size <= limits.name_bytes:
        return
    hint = ""
    if limits.name_bytes < 64:
        # Device OS < 0.8 lists longer names cut to 12 (Particle's docs: "temperature_sensor
        # is accessible as temperature_").
        cut = name.encode()[: limits.name_bytes].decode(errors="ignore")
        hint = f"; it lists longer names cut short: try {cut}"
    raise BadArgument(
        f"{what} name is {size} bytes; this device ({limits.basis}) takes names of at most "
        f"{limits.name_bytes}{hint}"
    )
