"""One connection of a virtual device: the ``Handler`` of a ``Driver`` around the device
end of the protocol core, from TCP up to its end.

Its timers (keepalive ping and its deadline, the heartbeat, setup()) are entries on the
process's one heap (driver/timers.py), so an idle fleet wakes only for its keepalives.
runner.py makes one link per attempt and waits for ``ended``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from cyan.driver import Driver, Keepalive, TimerGroup, Timers
from cyan.protocol import DeviceConnection, ProtocolError, Stage, messages
from cyan.protocol.events import (
    DescribeRequested,
    Event,
    PingAcknowledged,
    ServerHelloReceived,
    SessionStarted,
    TimeReceived,
)

if TYPE_CHECKING:
    from cyan.device.runner import VirtualDevice

log = logging.getLogger("cyan.device")


class DeviceLink:
    """``ended`` resolves to why the connection ended: an error, or None for a restart
    into new firmware. ``hello`` is set once the server's Hello arrived."""

    def __init__(self, device: VirtualDevice, core: DeviceConnection, timers: Timers) -> None:
        self.device = device
        self.core = core
        self.timers = timers
        self.driver = Driver(
            core, self, clock=timers.clock, ack_apart=not device.options.coalesce_replies
        )
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[ProtocolError | None] = loop.create_future()
        self.hello = asyncio.Event()
        self._group = TimerGroup(timers)
        options = device.options
        self._keepalive = Keepalive(
            self._group,
            self.driver,
            core.ping,
            self._silent,
            idle_s=options.idle_ping_s,
            timeout_s=options.ping_timeout_s,
        )
        self._describe_answered = False

    # -- the driver's Handler -------------------------------------------------------------

    def connected(self, driver: Driver) -> None:
        options = self.device.options
        if options.nagle:
            driver.set_nagle(True)  # Device OS's TCP stack has it on
        self.device.status.times["connected"] = self.timers.clock()
        # A stalled network: what the server sends before the handshake never arrives.
        driver.discard_reads = self.device.stalling

    def event_received(self, event: Event) -> None:
        device = self.device
        if isinstance(event, SessionStarted):
            device.status.times["session"] = self.timers.clock()
            device.session_started()
            device.stage("handshake", "fast blinking cyan", "keys exchanged, Hello sent")
        elif isinstance(event, ServerHelloReceived):
            device.status.times["hello"] = self.timers.clock()
            self.hello.set()
        elif isinstance(event, TimeReceived):
            device.status.server_time = event.unix_seconds
        elif isinstance(event, PingAcknowledged):
            if self._describe_answered and "described" not in device.status.times:
                device.status.times["described"] = self.timers.clock()
        else:
            device.answer(self, event)
            if isinstance(event, DescribeRequested):
                self._describe_answered = True

    def failed(self, error: ProtocolError) -> None:
        self.end(error)

    def closed(self, exc: Exception | None) -> None:
        self.device.status.times["closed"] = self.timers.clock()
        self.end(
            ProtocolError(
                Stage.SESSION,
                f"connection lost: {exc}" if exc else "the server closed the connection",
            )
        )

    # -- its life -------------------------------------------------------------------------

    def online(self) -> None:
        """Breathing cyan: start the keepalive and the heartbeat."""
        self._keepalive.start()
        if self.device.options.heartbeat_s is not None:
            self._group.at(0.0, self._heartbeat_due)

    def after(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in ``delay_s`` unless the connection has ended by then."""
        self._group.at(delay_s, callback)

    def end(self, why: ProtocolError | None) -> None:
        self._group.cancel()
        if not self.ended.done():
            self.ended.set_result(why)
        self.driver.close()

    def flush(self) -> None:
        self.driver.flush()

    def _silent(self) -> None:
        self.end(
            ProtocolError(
                Stage.KEEPALIVE_TIMEOUT,
                f"no answer to our ping within {self.device.options.ping_timeout_s:g} s",
            )
        )

    def _heartbeat_due(self) -> None:
        device = self.device
        interval = device.options.heartbeat_s
        if interval is None:
            return
        device.publish("heartbeat", f'{{"uptime":{device.tinker.uptime_s}}}', public=False)
        self._group.at(interval, self._heartbeat_due)

    def publish(self, info: messages.EventInfo) -> None:
        self.core.publish(info)
        self.flush()
