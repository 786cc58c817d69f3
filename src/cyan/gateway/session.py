"""One device connection, as the gateway sees it: the ``Handler`` of a ``Driver`` around
the sans-I/O ``ServerConnection``.

No task idles per connection (design.md): bytes arrive through the driver, timers sit on
the process's one heap (deadlines.py), and only the key lookup after the device names
itself runs as a short task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cyan.bus.events import CloudEvent
from cyan.cloud.types import FlashOptions, LiveDevice, UpdateProgress, VariableValue
from cyan.driver import Driver
from cyan.gateway.admission import FLOOD_DROPS, FLOOD_HOLD_S, EventGate
from cyan.gateway.deadlines import SessionDeadlines
from cyan.gateway.live import live_from_hello, with_description, with_report
from cyan.gateway.requests import DeviceRequests
from cyan.gateway.update import run_update
from cyan.protocol import ProtocolError, ServerConnection, Stage, messages, payloads
from cyan.protocol.events import (
    DescribeReceived,
    DeviceBlockReceived,
    DeviceIdentified,
    Event,
    EventPublished,
    GoodbyeReceived,
    HelloReceived,
    ResponseReceived,
    SessionKeyToSign,
    SubscriptionRequested,
    UpdateAccepted,
    UpdateFinished,
)
from cyan.protocol.limits import MEDIUM

if TYPE_CHECKING:
    from cyan.gateway.server import Gateway

log = logging.getLogger("cyan.gateway")


class DeviceSession:
    __slots__ = (
        "_activity",
        "_closing",
        "_deadlines",
        "_events",
        "_failure",
        "_gateway",
        "_handshaking",
        "_live",
        "connection",
        "device_id",
        "driver",
        "last_heard_at",
        "opened_at",
        "owner_id",
        "remote_ip",
        "requests",
    )

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.connection = ServerConnection(
            gateway.connection_key,
            random_bytes=gateway.random_bytes,
            clock=gateway.clock,
            max_frame_bytes=gateway.settings.max_frame_bytes,
        )
        self.driver = Driver(self.connection, self, clock=gateway.monotonic)
        self.driver.on_read = self._after_read
        self.remote_ip = "?"
        self.opened_at = gateway.monotonic()
        # Wall-clock time of the last frame; a float per frame, turned into LiveDevice on read.
        self.last_heard_at = gateway.clock()
        self.device_id: str | None = None
        self.owner_id: int | None = None
        self._live: LiveDevice | None = None
        self.requests = DeviceRequests(self)
        self._deadlines = SessionDeadlines(self, gateway.timers, gateway.settings)
        self._closing = False
        self._failure: ProtocolError | None = None
        # Set by whatever moves a running update on (gateway/update.py); None otherwise.
        self._activity: asyncio.Event | None = None
        self._events = EventGate(gateway.settings, self.opened_at)
        self._handshaking = False

    # -- the driver's Handler -------------------------------------------------------------

    def connected(self, driver: Driver) -> None:
        self.remote_ip = driver.peer_ip
        self._gateway.sessions.add(self)
        self._handshaking = self._gateway.handshakes.start(self.remote_ip)
        if not self._handshaking:
            most = self._gateway.settings.max_handshakes_per_address
            self.fail(
                ProtocolError(
                    Stage.BUSY, f"{most} connections from this address already in the handshake"
                )
            )
            return
        self._deadlines.connected()
        driver.drive(self.connection.start)

    def _after_read(self) -> None:
        self.last_heard_at = self._gateway.clock()
        if self.connection.pending_requests:
            # Device OS writes its empty ACK and its answer as two segments, and with Nagle
            # the second waits for our ACK of the first, which Linux delays by 40 ms: while
            # an answer is due, acknowledge at once (protocol.md §7.1).
            self.driver.quick_ack()
        if self._activity is not None:
            self._activity.set()

    def _writable(self) -> None:
        if self._activity is not None:
            self._activity.set()

    def _handshake_over(self) -> None:
        if self._handshaking:
            self._handshaking = False
            self._gateway.handshakes.end(self.remote_ip)

    def closed(self, exc: Exception | None) -> None:
        self._handshake_over()
        self._deadlines.cancel()
        self._gateway.sessions.discard(self)
        if self._failure is None and not self._closing:
            if exc is None and self.connection.closed_cleanly:
                log.info("device %s closed the connection", self.device_id)
            else:
                reason = f"connection lost: {exc}" if exc else "the device closed the connection"
                self._log_failure(
                    ProtocolError(self._stage_now(), reason, device_id=self.device_id)
                )
        self.requests.connection_lost()
        self.driver.drive(self.connection.closed)  # a running update fails, and says so
        if self._activity is not None:
            self._activity.set()
        if self.device_id is not None and self._live is not None:
            self._gateway.device_offline(self.device_id, self)

    def failed(self, error: ProtocolError) -> None:
        self.fail(error)

    # -- driving the core -----------------------------------------------------------------

    def drive(self, step: Callable[..., object], *args: object) -> None:
        self.driver.drive(step, *args)

    def flush(self) -> None:
        self.driver.flush()

    def monotonic(self) -> float:
        return self._gateway.monotonic()

    @property
    def write_buffer_size(self) -> int:
        return self.driver.write_buffer_size

    def watch_activity(self, write_window_bytes: int) -> asyncio.Event:
        """An event set whenever the device sends or the socket drains below a quarter of
        ``write_window_bytes``, until ``stop_watching_activity``."""
        self._activity = asyncio.Event()
        self.driver.on_writable = self._writable
        transport = self.driver.transport
        if transport is not None:
            transport.set_write_buffer_limits(write_window_bytes, write_window_bytes // 4)
        return self._activity

    def stop_watching_activity(self) -> None:
        self._activity = None
        self.driver.on_writable = None
        transport = self.driver.transport
        if transport is not None and not transport.is_closing():
            transport.set_write_buffer_limits()  # asyncio's defaults again

    def fail(self, error: ProtocolError) -> None:
        """Close this one connection, logging the stage and reason once."""
        if self._failure is not None or self._closing:
            return
        if error.device_id is None:
            error.device_id = self.device_id
        self._failure = error
        self._log_failure(error)
        self.close(error.reason)

    def _log_failure(self, error: ProtocolError) -> None:
        self._gateway.connection_failed(error, self.remote_ip)

    def close(self, reason: str) -> None:
        self._closing = True
        self.driver.close()

    def _stage_now(self) -> Stage:
        try:
            self.connection.receive_eof()
        except ProtocolError as error:
            return error.stage
        return Stage.SESSION

    # -- events from the core -------------------------------------------------------------

    def event_received(self, event: Event) -> None:
        if isinstance(event, DeviceBlockReceived | SessionKeyToSign):
            self._gateway.spawn(self._rsa_step(event))
        elif isinstance(event, DeviceIdentified):
            self.device_id = event.device_id
            self._gateway.spawn(self._identify(event.device_id))
        elif isinstance(event, HelloReceived):
            self._online(event)
        elif isinstance(event, DescribeReceived):
            self._described(event.description)
        elif isinstance(event, EventPublished):
            self._published(event.event)
        elif isinstance(event, SubscriptionRequested):
            self._subscribe(event.subscription)
        elif isinstance(event, ResponseReceived):
            self.requests.answered(event)
        elif isinstance(event, UpdateAccepted):
            mode = "fast OTA" if event.fast else "one chunk at a time"
            log.info("device %s takes the update (%s)", self.device_id, mode)
        elif isinstance(event, UpdateFinished):
            if event.succeeded:
                log.info("device %s took the update; it applies it and restarts", self.device_id)
                self._closing = True  # the restart that follows is no failure to record
            else:
                log.warning("update of device %s failed: %s", self.device_id, event.failure)
        elif isinstance(event, GoodbyeReceived):
            # The device leaves on purpose (sleep, reset, `cyan doctor` done): the close that
            # follows is no failure to record.
            log.info("device %s said goodbye", self.device_id)
            self._closing = True

    async def _rsa_step(self, event: DeviceBlockReceived | SessionKeyToSign) -> None:
        """The server key's part of the handshake, done by the gateway's RSA workers."""
        rsa = self._gateway.rsa
        assert rsa is not None  # a connection without the key exists only beside the pool
        work: Awaitable[object]
        answer: Callable[[Any], None]
        if isinstance(event, DeviceBlockReceived):
            work, answer = rsa.decrypt(event.block), self.connection.open_device_block
        else:
            work, answer = rsa.sign(event.digest), self.connection.sign_session_key
        try:
            result = await work
        except Exception:
            log.exception("the RSA worker processes failed")
            self.fail(ProtocolError(Stage.TIMEOUT, "the server's RSA worker processes failed"))
            return
        if not (self._closing or self._failure is not None):
            self.drive(answer, result)

    async def _identify(self, device_id: str) -> None:
        try:
            key, owner_id = await self._gateway.registered_key(
                device_id, self.connection.offered_key_der
            )
        except Exception:
            log.exception("key lookup for device %s failed", device_id)
            self.fail(
                ProtocolError(
                    Stage.UNKNOWN_DEVICE, "the device store could not be read", device_id=device_id
                )
            )
            return
        if self._closing or self._failure is not None:
            return
        self.owner_id = owner_id
        self.drive(self.connection.accept_device, key)

    def _online(self, event: HelloReceived) -> None:
        self._handshake_over()
        live = live_from_hello(event.device_id, self.remote_ip, event.hello, datetime.now(UTC))
        self._live = live
        self._gateway.device_online(self)
        flags = messages.DescribeFlags.APPLICATION
        if not live.self_describes:
            # The system part names the release, and with it the device's limits; a device
            # that posts its describes (2.x) posts its system part by itself.
            flags |= messages.DescribeFlags.SYSTEM
        self.connection.request_describe(flags)
        # A device that never describes itself still runs setup() after this connect and
        # registers what it has: it is asked again once the app had time to start. (The
        # original spark-protocol server asked only when a request needed it; calls and
        # reads still do, requests.py.)
        self._deadlines.online(describe_again=not live.self_describes)

    def _subscribe(self, subscription: messages.SubscriptionInfo) -> None:
        requests = self.requests
        if subscription in requests.subscriptions:
            return
        if len(requests.subscriptions) >= self._gateway.settings.max_subscriptions:
            if not requests.refused_subscriptions:
                log.warning(
                    "device %s holds %d subscriptions, the most one connection may: "
                    "refusing %r and any more (counted)",
                    self.device_id,
                    len(requests.subscriptions),
                    subscription.prefix,
                )
            requests.refused_subscriptions += 1
            if requests.refused_subscriptions >= FLOOD_DROPS:  # a flood, not firmware's few
                self.driver.hold_reading(FLOOD_HOLD_S)
            return
        requests.subscriptions[subscription] = None
        if self.device_id is not None and self._live is not None:
            self._gateway.router.subscribe(self.device_id, subscription.prefix)

    def _described(self, description: payloads.Description) -> None:
        hello = self.connection.hello
        if self._live is None or hello is None:
            return
        self._live = with_description(self._live, description, hello, self._gateway.shared)
        self._gateway.device_described(self, description)

    def _published(self, info: messages.EventInfo) -> None:
        if self.device_id is None:
            return
        limits = self._live.limits if self._live is not None else MEDIUM
        now = self._gateway.monotonic()
        dropped = self._events.refusal(info, limits, now)
        if dropped is not None:
            self._gateway.event_dropped(self.device_id, info.name, dropped)
            if hold_s := self._events.hold_s(now):
                self.driver.hold_reading(hold_s)
            return
        if self._live is not None:
            self._live = with_report(self._live, info)
        if info.name == messages.CLAIM_CODE_EVENT and info.data:
            self._gateway.spawn(
                self._gateway.redeem_claim_code(
                    self.device_id, info.data.decode("ascii", errors="replace")
                )
            )
        self._gateway.publish(
            CloudEvent(
                name=info.name,
                data=info.data.decode("utf-8", errors="replace") if info.data is not None else None,
                ttl=info.ttl,
                public=info.public,
                published_at=datetime.now(UTC),
                device_id=self.device_id,
                owner_id=self.owner_id,
            )
        )

    # -- the DeviceLink the router uses ---------------------------------------------------

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int:
        return await self.requests.call_function(name, argument, timeout_s)

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue:
        return await self.requests.get_variable(name, timeout_s)

    async def describe_again(self) -> LiveDevice:
        await self.requests.describe_again(self._gateway.settings.describe_timeout_s)
        return self.live

    def deliver_event(self, event: CloudEvent) -> None:
        self.requests.deliver_event(event)

    @property
    def live(self) -> LiveDevice:
        assert self._live is not None
        return replace(self._live, last_heard=datetime.fromtimestamp(self.last_heard_at, UTC))

    @property
    def pings_answered(self) -> int:
        """Keepalive pings the device answered in time this session."""
        return self._deadlines.pings_answered

    @property
    def is_online(self) -> bool:
        # The driver's state too: a reset connection ends without an EOF and without fail(),
        # and a request on it must be refused at once, not wait out its timeout.
        return self._live is not None and not self._closing and not self.driver.closing

    async def flash(
        self, data: bytes, options: FlashOptions, on_progress: Callable[[UpdateProgress], None]
    ) -> None:
        await run_update(self, data, options, on_progress)

    async def signal(self, on: bool, timeout_s: float) -> None:
        await self.requests.request(self.connection.signal, timeout_s, on)
        if self._live is not None:
            self._live = replace(self._live, signaling=on)

    def set_owner(self, owner_id: int | None) -> None:
        self.owner_id = owner_id
