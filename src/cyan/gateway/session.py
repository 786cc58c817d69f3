"""One device connection: an asyncio Protocol around the sans-I/O ``ServerConnection``.

No task idles per connection (design.md): bytes arrive in ``data_received``, timers
are checked by the gateway's sweep, and only the key lookup after the device names
itself runs as a short task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from cyan.cloud.types import (
    VARIABLE_TYPE_NAMES,
    CloudEvent,
    FlashOptions,
    LiveDevice,
    UpdateProgress,
    VariableValue,
)
from cyan.diagnose import diagnose
from cyan.gateway.requests import DeviceRequests
from cyan.gateway.tcp import quick_ack
from cyan.gateway.update import run_update
from cyan.gateway.versions import release_name, system_module_of
from cyan.protocol import ProtocolError, ServerConnection, Stage, messages, ota, payloads
from cyan.protocol.events import (
    DescribeReceived,
    DeviceIdentified,
    Event,
    EventPublished,
    GoodbyeReceived,
    HelloReceived,
    ResponseReceived,
    SubscriptionRequested,
    UpdateAccepted,
    UpdateFinished,
)
from cyan.protocol.limits import device_limits

if TYPE_CHECKING:
    from cyan.gateway.server import Gateway

log = logging.getLogger("cyan.gateway")


class DeviceSession(asyncio.Protocol):
    __slots__ = (
        "_activity",
        "_closing",
        "_describe_due",
        "_failure",
        "_gateway",
        "_live",
        "_transport",
        "connection",
        "device_id",
        "last_heard_at",
        "last_received",
        "opened_at",
        "owner_id",
        "ping_sent_at",
        "remote_ip",
        "requests",
    )

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._transport: asyncio.Transport | None = None
        self.connection = ServerConnection(
            gateway.server_key,
            random_bytes=gateway.random_bytes,
            clock=gateway.clock,
            max_frame_bytes=gateway.settings.max_frame_bytes,
        )
        self.remote_ip = "?"
        self.opened_at = gateway.monotonic()
        self.last_received = self.opened_at
        # Wall-clock time of the last frame; a float per frame, turned into LiveDevice on read.
        self.last_heard_at = gateway.clock()
        self.ping_sent_at: float | None = None
        self.device_id: str | None = None
        self.owner_id: int | None = None
        self._live: LiveDevice | None = None
        self.requests = DeviceRequests(self)
        self._closing = False
        self._failure: ProtocolError | None = None
        # Set by whatever moves a running update on (gateway/update.py); None otherwise.
        self._activity: asyncio.Event | None = None
        # When to ask a device that never describes itself again (monotonic, soonest last).
        self._describe_due: list[float] = []

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote_ip = str(peer[0]) if peer else "?"
        self._gateway.sessions.add(self)
        self.drive(self.connection.start)

    def data_received(self, data: bytes) -> None:
        self.last_received = self._gateway.monotonic()
        self.ping_sent_at = None
        self.last_heard_at = self._gateway.clock()
        self.drive(self.connection.receive_data, data)
        if self.connection.pending_requests and self._transport is not None:
            # Device OS writes its empty ACK and its answer as two segments, and with Nagle
            # the second waits for our ACK of the first, which Linux delays by 40 ms: while
            # an answer is due, acknowledge at once (protocol.md §7.1).
            quick_ack(self._transport)
        if self._activity is not None:
            self._activity.set()

    def resume_writing(self) -> None:
        if self._activity is not None:
            self._activity.set()

    def eof_received(self) -> bool | None:
        self.drive(self.connection.receive_eof)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._gateway.sessions.discard(self)
        if self._failure is None and not self._closing:
            reason = f"connection lost: {exc}" if exc else "the device closed the connection"
            self._log_failure(ProtocolError(self._stage_now(), reason, device_id=self.device_id))
        self.requests.connection_lost()
        self.drive(self.connection.closed)  # a running update fails, and says so
        if self._activity is not None:
            self._activity.set()
        if self.device_id is not None and self._live is not None:
            self._gateway.device_offline(self.device_id, self)

    # -- driving the core -----------------------------------------------------------------

    @property
    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def watch_activity(self, write_window_bytes: int) -> asyncio.Event:
        """An event set whenever the device sends or the socket drains below a quarter of
        ``write_window_bytes``, until ``stop_watching_activity``."""
        self._activity = asyncio.Event()
        if self._transport is not None:
            self._transport.set_write_buffer_limits(write_window_bytes, write_window_bytes // 4)
        return self._activity

    def stop_watching_activity(self) -> None:
        self._activity = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.set_write_buffer_limits()  # asyncio's defaults again

    def monotonic(self) -> float:
        return self._gateway.monotonic()

    def drive(self, step: Callable[..., object], *args: object) -> None:
        """Call one core method, then write its bytes and handle its events."""
        try:
            step(*args)
            self.flush()
            for event in self.connection.events_received():
                self._dispatch(event)
            self.flush()
        except ProtocolError as error:
            self.fail(error)

    def flush(self) -> None:
        data = self.connection.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

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
        who = f"device {error.device_id}" if error.device_id else "connection"
        log.warning(
            "%s from %s failed at stage %s: %s",
            who,
            self.remote_ip,
            error.stage.value,
            diagnose(error).sentence(),
        )
        self._gateway.record_failure(error, self.remote_ip)

    def close(self, reason: str) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _stage_now(self) -> Stage:
        try:
            self.connection.receive_eof()
        except ProtocolError as error:
            return error.stage
        return Stage.SESSION

    # -- events from the core -------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DeviceIdentified):
            self.device_id = event.device_id
            self._gateway.spawn(self._identify(event.device_id))
        elif isinstance(event, HelloReceived):
            self._online(event)
        elif isinstance(event, DescribeReceived):
            self._described(event.description)
        elif isinstance(event, EventPublished):
            self._published(event.event)
        elif isinstance(event, SubscriptionRequested):
            subscriptions = self.requests.subscriptions
            if event.subscription not in subscriptions:
                subscriptions.append(event.subscription)
                if self.device_id is not None and self._live is not None:
                    self._gateway.router.subscribe(self.device_id, event.subscription.prefix)
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
        now = datetime.now(UTC)
        hello = event.hello
        self_describes = bool(hello.flags & messages.HelloFlags.DEVICE_INITIATED_DESCRIBE)
        self._live = LiveDevice(
            device_id=event.device_id,
            remote_ip=self.remote_ip,
            connected_at=now,
            last_heard=now,
            platform_id=hello.platform_id,
            product_id=hello.product_id,
            product_firmware_version=hello.product_firmware_version,
            system_version=release_name(hello.system_module_version),
            limits=device_limits(hello, None, release_name(hello.system_module_version)),
            self_describes=self_describes,
        )
        self._gateway.device_online(self)
        flags = messages.DescribeFlags.APPLICATION
        if not self_describes:
            # The system part names the release, and with it the device's limits; a device
            # that posts its describes (2.x) posts its system part by itself.
            flags |= messages.DescribeFlags.SYSTEM
        self.connection.request_describe(flags)
        if not self_describes:
            # Its setup() runs after this connect and registers what it has, but it will
            # never say so: ask again once the app has had time to start (a few times, as
            # a slow setup may register late). The original spark-protocol server asked
            # only when a request needed it; calls and reads still do (requests.py).
            first = self._gateway.settings.describe_again_s
            start = self._gateway.monotonic()
            self._describe_due = [start + first * factor for factor in (30, 5, 1)]

    def _described(self, description: payloads.Description) -> None:
        if self._live is None:
            return
        live = self._live
        if description.functions is not None:
            live = replace(live, functions=self._gateway.shared(description.functions))
        if description.variables is not None:
            variables = {
                # A type code Cyan does not know is read as a string (payloads.py
                # decode_variable), so it is listed as one.
                name: VARIABLE_TYPE_NAMES.get(code, "string")
                for name, code in description.variables.items()
            }
            live = replace(live, variables=self._gateway.shared(variables))
        modules = (description.system or {}).get("m")
        if isinstance(modules, list):
            found = tuple(m for m in modules if isinstance(m, dict))
            module_version = system_module_of(found)
            release = release_name(module_version)
            hello = self.connection.hello
            assert hello is not None
            live = replace(
                live,
                modules=found,
                system_version=release or live.system_version,
                limits=device_limits(hello, module_version, release),
            )
        self._live = live
        self._gateway.device_described(self, description)

    def _published(self, info: messages.EventInfo) -> None:
        if self.device_id is None:
            return
        if info.name == ota.CHUNK_SIZE_EVENT and info.data and self._live is not None:
            # Device OS announces the chunk size it takes; updates use it (protocol.md §7).
            size = int(info.data) if info.data.isdigit() else 0
            if 0 < size <= ota.MAX_CHUNK_BYTES:
                self._live = replace(self._live, ota_chunk_bytes=size)
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
    def is_online(self) -> bool:
        return self._live is not None and not self._closing

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

    # -- timers, checked by the gateway's sweep -------------------------------------------

    def check_timers(self, now: float) -> None:
        settings = self._gateway.settings
        if self._describe_due and now >= self._describe_due[-1] and self.is_online:
            self._describe_due.pop()
            self.drive(self.connection.request_describe, messages.DescribeFlags.APPLICATION)
        if self._live is None:
            if now - self.opened_at > settings.handshake_timeout_s:
                state = self.connection.handshake_state.value
                waiting = "the device's Hello" if self.connection.established else state
                self.fail(
                    ProtocolError(
                        Stage.TIMEOUT,
                        f"handshake not finished within {settings.handshake_timeout_s:g} s "
                        f"(stalled waiting in {waiting})",
                        device_id=self.device_id,
                    )
                )
            return
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at > settings.ping_timeout_s:
                self.fail(
                    ProtocolError(
                        Stage.KEEPALIVE_TIMEOUT,
                        f"no answer to our ping within {settings.ping_timeout_s:g} s "
                        f"after {settings.idle_ping_s:g} s of silence",
                    )
                )
        elif now - self.last_received > settings.idle_ping_s:
            self.ping_sent_at = now
            self.drive(self.connection.ping)
