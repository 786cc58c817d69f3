"""What a virtual Photon does once connected: Tinker's functions and variables, its
describe, the LED when signalled, events from the cloud, and firmware updates.

runner.py keeps the connection alive; this answers what arrives on it.
"""

from __future__ import annotations

import logging

from cyan.device.firmware import Firmware
from cyan.device.options import DeviceStatus
from cyan.device.tinker import FUNCTIONS, VARIABLES, Tinker
from cyan.device.updater import UPDATE_EVENTS, UpdateOutcome, Updater
from cyan.protocol import DeviceConnection, messages, payloads
from cyan.protocol.events import (
    DescribeRequested,
    Event,
    EventDelivered,
    FunctionCallRequested,
    SignalRequested,
    VariableRequested,
)

log = logging.getLogger("cyan.device")


class DeviceApp:
    def __init__(
        self, tinker: Tinker, firmware: Firmware, updater: Updater, status: DeviceStatus, name: str
    ) -> None:
        self.tinker = tinker
        self.firmware = firmware
        self.updater = updater
        self.status = status
        self.name = name
        # Whether setup() has registered Tinker's functions and variables this boot: until
        # then the describe is empty and calls go unanswered, as on a real device.
        self.registered = False

    def answer(self, connection: DeviceConnection, event: Event) -> UpdateOutcome | None:
        if isinstance(event, DescribeRequested):
            connection.reply_describe(event, self.describe(event.flags))
        elif isinstance(event, FunctionCallRequested):
            self.status.calls += 1
            value = self.tinker.call(event.name, event.argument) if self.registered else None
            # Firmware with no such function acknowledges and never answers (protocol.md §7).
            if value is not None:
                connection.reply_function(event.token, value)
        elif isinstance(event, VariableRequested):
            found = self.tinker.variable(event.name) if self.registered else None
            connection.reply_variable(event, found)
        elif isinstance(event, SignalRequested):
            self.status.signaling = event.on
            self.status.led = "rainbow" if event.on else "breathing cyan"
            log.info("[%s] signal %s", self.name, "on: LED rainbow" if event.on else "off")
        elif isinstance(event, EventDelivered):
            self.status.received_events.append(event.event)
        elif isinstance(event, UPDATE_EVENTS):
            return self.updater.handle(connection, event)
        return None

    def describe(self, flags: int) -> bytes:
        """The describe for ``flags``: application part, system part, or both."""
        app = bool(flags & messages.DescribeFlags.APPLICATION)
        system = self.firmware.system_describe() if flags & messages.DescribeFlags.SYSTEM else None
        if not app:
            return payloads.encode_description(None, None, system)
        registered = self.registered
        return payloads.encode_description(
            FUNCTIONS if registered else [], VARIABLES if registered else {}, system
        )
