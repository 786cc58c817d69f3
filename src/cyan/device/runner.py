"""The virtual device: the device end of the protocol core over asyncio.

It walks the stages a Photon walks (Wi-Fi up → DNS → TCP → handshake → breathing
cyan), logs each, resolves the server's name on every attempt, and reconnects
with a short capped back-off, as the firmware does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from typing import cast

from cyan.device.app import DeviceApp
from cyan.device.firmware import Firmware
from cyan.device.keystore import KeyStore
from cyan.device.options import ERROR_LEDS, DeviceOptions, DeviceStatus, parse_server
from cyan.device.profiles import PHOTON_PLATFORM_ID
from cyan.device.resolver import fallback_address, resolve
from cyan.device.tinker import FUNCTIONS, VARIABLES, Tinker
from cyan.device.updater import UpdateOutcome, Updater
from cyan.diagnose import diagnose_device_side
from cyan.errors import CyanError
from cyan.protocol import DeviceConnection, ProtocolError, Stage, crypto, keys, messages
from cyan.protocol.events import (
    DescribeRequested,
    Event,
    ServerHelloReceived,
    SessionStarted,
    TimeReceived,
)

log = logging.getLogger("cyan.device")


class _Link(asyncio.Protocol):
    def __init__(self, device: VirtualDevice) -> None:
        self._device = device

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The nonce may arrive before create_connection() returns to the caller, so the
        # transport must be known from here on.
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self._device._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if self._device.options.nagle and sock is not None:
            # asyncio turns Nagle off on every TCP connection; Device OS's stack has it on.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    def data_received(self, data: bytes) -> None:
        self._device._feed(data)

    def eof_received(self) -> bool | None:
        self._device._eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._device._lost(exc)


class VirtualDevice:
    def __init__(self, keystore: KeyStore, options: DeviceOptions | None = None) -> None:
        self.keys = keystore
        self.options = options or DeviceOptions()
        self.status = DeviceStatus()
        self.tinker = Tinker(
            clock=time.monotonic,
            build=f"cyan virtual Tinker, Device OS {self.options.profile.version}",
        )
        self._connection: DeviceConnection | None = None
        self._transport: asyncio.Transport | None = None
        # How the connection ended: an error, or None for a restart into a new firmware.
        self._closed: asyncio.Future[ProtocolError | None] | None = None
        self._hello: asyncio.Event = asyncio.Event()
        self._last_received = 0.0
        self._ping_sent_at: float | None = None
        self._stopping = False
        self._last_good_address: str | None = None
        self._attempts = 0
        self._stalling = False
        firmware = Firmware.load(keystore.directory, self.options.profile)
        updater = Updater(firmware, self.options.ota_faults, name=self.short_id)
        self.app = DeviceApp(self.tinker, firmware, updater, self.status, self.short_id)
        self._restarted_by_update = False
        # setup() is due: it runs once per boot, after the first connect (options.py).
        self._setup_due = False
        self._connected_at = 0.0

    @property
    def device_id(self) -> str:
        return self.keys.device_id

    @property
    def short_id(self) -> str:
        """What the log shows: enough of the id to tell a fleet's devices apart."""
        return self.device_id[:8]

    def _stage(self, stage: str, led: str, detail: str) -> None:
        self.status.stage, self.status.led = stage, led
        log.info("[%s] %s: %s", self.short_id, stage, detail)

    # -- the connect loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stay connected, and reconnect after any failure, until ``stop()``."""
        delay = self.options.backoff_initial_s
        while not self._stopping:
            error = await self.connect_once()
            if self._stopping:
                break
            if error is not None:
                self.status.last_error = error
                log.warning(
                    "[%s] failed at stage %s: %s",
                    self.short_id,
                    error.stage.value,
                    diagnose_device_side(error).sentence(),
                )
                # A Photon re-reads its keys when it restarts after a failure; a key
                # directory fixed meanwhile (cyan keys server/doctor) takes effect now.
                self._reload_keys()
            # A short jittered back-off keeps a fleet from reconnecting in lock-step.
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, self.options.backoff_max_s)
            if self.status.connects and error is not None and error.stage is Stage.SESSION:
                delay = self.options.backoff_initial_s

    async def stop(self) -> None:
        self._stopping = True
        connection = self._connection
        if (
            connection is not None
            and self.status.connected
            and self.options.profile.hello_flags & messages.HelloFlags.GOODBYE
        ):
            # Device OS 2.x says goodbye before a disconnect it means (protocol.md §4.15).
            connection.goodbye()
            self._flush()
        if self._transport is not None:
            self._transport.close()

    def _reload_keys(self) -> None:
        try:
            fresh = KeyStore.load(self.keys.directory)
        except CyanError as exc:
            log.debug("[%s] keeping the keys in memory: %s", self.short_id, exc)
            return
        if _identity(fresh) != _identity(self.keys):
            log.info("[%s] key directory changed; using the new keys", self.short_id)
        self.keys = fresh

    def server_address(self) -> tuple[str, int]:
        if self.options.server:
            return parse_server(self.options.server)
        address = self.keys.server.address
        if address.host is None:
            raise ProtocolError(
                Stage.DNS,
                "the server key image names no server host; the device "
                "would go to Particle's cloud",
            )
        return address.host, address.effective_port

    async def connect_once(self) -> ProtocolError | None:
        """One connection from Wi-Fi up to its end; returns why it ended."""
        loop = asyncio.get_running_loop()
        self._stage("wifi", "breathing green", "Wi-Fi up")
        try:
            host, port = self.server_address()
            self._stage("dns", "blinking cyan", f"resolving {host}")
            ip = await self._resolve(host, port)
            self._attempts += 1
            self._stalling = self._attempts <= self.options.stall_handshakes
            self._stage("tcp", "blinking cyan", f"connecting to {ip}:{port}")
            self._connection = DeviceConnection(
                self.device_id,
                self.keys.device_key,
                self.keys.server.public_key,
                messages.HelloInfo(
                    PHOTON_PLATFORM_ID,
                    self.options.product_firmware_version,
                    self._hello_flags(),
                    PHOTON_PLATFORM_ID,
                ),
                random_bytes=os.urandom,
                clock=time.time,
                separate_responses=self.options.profile.separate_responses,
                function_argument_bytes=self.options.profile.limits.function_argument_bytes,
            )
            self._closed = loop.create_future()
            self._hello = asyncio.Event()
            self.app.updater.held = None  # an update held on a lost connection is gone
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: _Link(self), ip, port),
                    self.options.io_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
                raise ProtocolError(
                    Stage.TCP, f"TCP connect to {ip}:{port} failed: {reason}"
                ) from exc
            self._last_received = time.monotonic()
            self._stage("handshake", "fast blinking cyan", "waiting for the server's nonce")
            await self._wait_hello()
            self._last_good_address = ip
            self._online()
            return await self._stay_connected()
        except ProtocolError as error:
            self._disconnect()
            self.status.led = ERROR_LEDS.get(error.stage, "blinking red")
            return error
        finally:
            self.status.connected = False

    async def _resolve(self, host: str, port: int) -> str:
        try:
            return await resolve(host, port, self.options.dns_server, self.options.io_timeout_s)
        except ProtocolError as error:
            pinned, last_good = self.keys.server.address.host, self._last_good_address
            fallback = fallback_address(host, pinned, last_good)
            if not self.options.dns_fallback or fallback is None:
                raise
            log.warning("[%s] %s; falling back to %s (%s)", self.short_id, error.reason, *fallback)
            return fallback[0]

    async def _wait_hello(self) -> None:
        assert self._closed is not None
        hello: asyncio.Future[object] = asyncio.ensure_future(self._hello.wait())
        closed: asyncio.Future[object] = self._closed  # type: ignore[assignment]
        limit = self.options.io_timeout_s + self.options.hello_timeout_s
        try:
            done, _ = await asyncio.wait(
                {hello, closed},
                timeout=limit,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            hello.cancel()
        if self._closed.done():
            raise self._closed.result() or ProtocolError(Stage.HELLO, "closed before the Hello")
        if not done:
            raise ProtocolError(Stage.TIMEOUT, "the handshake did not finish in time")

    def _online(self) -> None:
        assert self._connection is not None
        self.status.connected = True
        self.status.connects += 1
        self._connected_at = time.monotonic()
        self._setup_due = not self.app.registered
        self._stage("cloud", "breathing cyan", "connected")
        self._after_connect(self._connection)

    def run_setup(self) -> None:
        """The app's setup(): Tinker registers its functions and variables (once per boot).

        Device OS 2.x then posts its application describe; older releases say nothing,
        and the cloud learns of them only by asking (protocol.md §7.1).
        """
        self._setup_due = False
        if self.app.registered:
            return
        self.app.registered = True
        log.info(
            "[%s] setup(): registered %d functions and %d variables",
            self.short_id,
            len(FUNCTIONS),
            len(VARIABLES),
        )
        connection = self._connection
        if connection is not None and self.status.connected and self.options.profile.posts_describe:
            connection.post_describe(
                messages.DescribeFlags.APPLICATION,
                self.app.describe(messages.DescribeFlags.APPLICATION),
            )
            self._flush()

    def _after_connect(self, connection: DeviceConnection) -> None:
        """What Device OS sends unasked right after the Hello (protocol.md §7)."""
        profile = self.options.profile
        if self.options.claim_code:
            connection.publish(
                messages.EventInfo(
                    messages.CLAIM_CODE_EVENT, self.options.claim_code.encode(), 60, public=False
                )
            )
        if profile.posts_describe:
            connection.post_describe(
                messages.DescribeFlags.SYSTEM, self.app.describe(messages.DescribeFlags.SYSTEM)
            )
        for name, data in profile.connect_events:
            connection.publish(messages.EventInfo(name, data.encode(), 60, public=False))
        connection.request_time()
        if profile.posts_describe and self.app.registered:
            # Reconnecting after setup() ran: the describe goes out with the connect.
            connection.post_describe(
                messages.DescribeFlags.APPLICATION,
                self.app.describe(messages.DescribeFlags.APPLICATION),
            )
        for prefix, mine in profile.system_subscriptions:
            connection.subscribe(prefix, my_devices=mine)
        self._flush()

    async def _stay_connected(self) -> ProtocolError | None:
        assert self._closed is not None and self._connection is not None
        next_heartbeat = time.monotonic()
        while not self._closed.done():
            now = time.monotonic()
            after = self.options.setup_after_s
            if self._setup_due and after is not None and now - self._connected_at >= after:
                self.run_setup()
            if now >= next_heartbeat:
                next_heartbeat = now + self.options.heartbeat_s
                self.publish("heartbeat", f'{{"uptime":{self.tinker.uptime_s}}}', public=False)
            idle = now - self._last_received
            if self._ping_sent_at is None and idle > self.options.idle_ping_s:
                self._ping_sent_at = now
                self._connection.ping()
                self._flush()
            elif (
                self._ping_sent_at is not None
                and now - self._ping_sent_at > self.options.ping_timeout_s
            ):
                self._disconnect()
                return ProtocolError(
                    Stage.KEEPALIVE_TIMEOUT,
                    f"no answer to our ping within {self.options.ping_timeout_s:g} s",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closed), 0.25)
        return self._closed.result()

    # -- I/O callbacks --------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._connection is None:
            return
        if self._stalling and not self._connection.established:
            return  # a stalled network: the server's nonce never arrives
        self._last_received = time.monotonic()
        self._ping_sent_at = None
        try:
            self._connection.receive_data(data)
            if not self.options.coalesce_replies:
                self._flush()  # an ACK goes out on its own, before the answer (options.py)
            for event in self._connection.events_received():
                self._dispatch(event)
            self._flush()
        except ProtocolError as error:
            self._fail(error)

    def _eof(self) -> None:
        if self._connection is not None:
            try:
                self._connection.receive_eof()
            except ProtocolError as error:
                self._fail(error)

    def _lost(self, exc: Exception | None) -> None:
        self._fail(
            ProtocolError(
                Stage.SESSION,
                f"connection lost: {exc}" if exc else "the server closed the connection",
            )
        )

    def _fail(self, error: ProtocolError) -> None:
        if self._stalling:
            error = ProtocolError(
                Stage.TIMEOUT, "the handshake stalled (on purpose: --stall-handshakes)"
            )
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(error)
        self._disconnect()

    def _hello_flags(self) -> int:
        flags = self.options.profile.hello_flags
        if self._restarted_by_update:
            self._restarted_by_update = False
            flags |= messages.HelloFlags.OTA_UPGRADE_SUCCESSFUL
        return flags

    def _disconnect(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _flush(self) -> None:
        if self._connection is None or self._transport is None:
            return
        data = self._connection.data_to_send()
        if data:
            self._transport.write(data)

    # -- what the server asks -------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        connection = self._connection
        assert connection is not None
        if isinstance(event, SessionStarted):
            self._stage("handshake", "fast blinking cyan", "keys exchanged, Hello sent")
        elif isinstance(event, ServerHelloReceived):
            self._hello.set()
        elif isinstance(event, TimeReceived):
            self.status.server_time = event.unix_seconds
        else:
            outcome = self.app.answer(connection, event)
            if isinstance(event, DescribeRequested) and self._setup_due:
                # setup() runs once the first describe is answered and written (below).
                asyncio.get_running_loop().call_soon(self.run_setup)
            if outcome is UpdateOutcome.DISCONNECT:
                self._fail(ProtocolError(Stage.SESSION, "lost the connection during the update"))
            elif outcome is UpdateOutcome.RESTART:
                self._restart_into_update()

    def _restart_into_update(self) -> None:
        # Device OS resets once the UpdateDone answer is out; its next Hello says the
        # update went in (flag 0x01), and setup() runs again after it connects.
        self._restarted_by_update = True
        self.app.registered = False
        self._flush()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._disconnect()

    def release_update(self) -> None:
        """Let an update held by the ``hold_at_bytes`` fault go on."""
        if self._connection is not None:
            self.app.updater.release(self._connection)
            self._flush()

    def publish(self, name: str, data: str | None, *, public: bool = False, ttl: int = 60) -> None:
        if self._connection is None or not self.status.connected:
            return
        self._connection.publish(
            messages.EventInfo(name, data.encode() if data else None, ttl, public)
        )
        self._flush()


def _identity(store: KeyStore) -> tuple[str, bytes, keys.ServerAddress, str]:
    return (
        store.device_id,
        store.public_key_pem,
        store.server.address,
        crypto.fingerprint(store.server.public_key),
    )
