"""The virtual device: the device end of the protocol core, one connection after another.

It walks the stages a Photon walks (Wi-Fi up → DNS → TCP → handshake → breathing
cyan), logs each, resolves the server's name on every attempt, and reconnects
with a short capped back-off, as the firmware does. Each connection is a ``DeviceLink``
(link.py) on the shared driver; this module is what lasts across them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable

from cyan.device.app import DeviceApp
from cyan.device.firmware import Firmware
from cyan.device.link import DeviceLink
from cyan.device.options import ERROR_LEDS, DeviceOptions, DeviceStatus
from cyan.device.tinker import FUNCTIONS, VARIABLES, Tinker
from cyan.device.updater import UpdateOutcome, Updater
from cyan.diagnose import diagnose_device_side
from cyan.driver import Timers, process_timers
from cyan.errors import CyanError
from cyan.firmware.platforms import PHOTON
from cyan.keydir import KeyStore
from cyan.net.address import parse_server
from cyan.net.resolver import fallback_address, resolve
from cyan.protocol import DeviceConnection, ProtocolError, Stage, crypto, keys, messages
from cyan.protocol.events import DescribeRequested, Event

log = logging.getLogger("cyan.device")


class VirtualDevice:
    def __init__(
        self,
        keystore: KeyStore,
        options: DeviceOptions | None = None,
        *,
        timers: Timers | None = None,
    ) -> None:
        self.keys = keystore
        self.options = options or DeviceOptions()
        self.status = DeviceStatus()
        self.tinker = Tinker(
            clock=time.monotonic,
            build=f"cyan virtual Tinker, Device OS {self.options.profile.version}",
        )
        self._timers = timers
        self.link: DeviceLink | None = None
        self._stopping = False
        self._last_good_address: str | None = None
        self._attempts = 0
        # Ignore the server's nonce on this attempt (options.stall_handshakes).
        self.stalling = False
        firmware = Firmware.load(keystore.directory, self.options.profile)
        updater = Updater(firmware, self.options.ota_faults, name=self.short_id)
        self.app = DeviceApp(self.tinker, firmware, updater, self.status, self.short_id)
        self._restarted_by_update = False
        # setup() is due: it runs once per boot, after the first connect (options.py).
        self._setup_due = False
        # Called each time it is breathing cyan (benchmarks wait on it).
        self.on_online: Callable[[], None] | None = None

    @property
    def device_id(self) -> str:
        return self.keys.device_id

    @property
    def short_id(self) -> str:
        """What the log shows: enough of the id to tell a fleet's devices apart."""
        return self.device_id[:8]

    @property
    def connection(self) -> DeviceConnection | None:
        """The core of the current connection, if there is one."""
        return self.link.core if self.link is not None else None

    @property
    def timers(self) -> Timers:
        if self._timers is None:
            self._timers = process_timers()
        return self._timers

    def stage(self, stage: str, led: str, detail: str) -> None:
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
        link = self.link
        if link is None:
            return
        if self.status.connected and self.options.profile.hello_flags & messages.HelloFlags.GOODBYE:
            # Device OS 2.x says goodbye before a disconnect it means (protocol.md §4.15).
            link.core.goodbye()
            link.flush()
        link.end(ProtocolError(Stage.SESSION, "the device was stopped"))

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
        self.status.times = {"start": self.timers.clock()}
        self.stage("wifi", "breathing green", "Wi-Fi up")
        try:
            host, port = self.server_address()
            self.stage("dns", "blinking cyan", f"resolving {host}")
            ip = await self._resolve(host, port)
            self._attempts += 1
            self.stalling = self._attempts <= self.options.stall_handshakes
            self.stage("tcp", "blinking cyan", f"connecting to {ip}:{port}")
            link = self.link = DeviceLink(self, self._new_core(), self.timers)
            self.app.updater.held = None  # an update held on a lost connection is gone
            await self._open(link, ip, port)
            self.stage("handshake", "fast blinking cyan", "waiting for the server's nonce")
            await self._wait_hello(link)
            self._last_good_address = ip
            self._online(link)
            return await link.ended
        except ProtocolError as error:
            if self.link is not None:
                self.link.end(error)
            if self.stalling:
                error = ProtocolError(
                    Stage.TIMEOUT, "the handshake stalled (on purpose: --stall-handshakes)"
                )
            self.status.led = ERROR_LEDS.get(error.stage, "blinking red")
            return error
        finally:
            self.status.connected = False

    def _new_core(self) -> DeviceConnection:
        profile = self.options.profile
        return DeviceConnection(
            self.device_id,
            self.keys.device_key,
            self.keys.server.public_key,
            messages.HelloInfo(
                PHOTON, self.options.product_firmware_version, self._hello_flags(), PHOTON
            ),
            random_bytes=os.urandom,
            clock=time.time,
            separate_responses=profile.separate_responses,
            function_argument_bytes=profile.limits.function_argument_bytes,
        )

    async def _open(self, link: DeviceLink, ip: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.options.io_timeout_s):
                await loop.create_connection(lambda: link.driver, ip, port)
        except (OSError, TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
            raise ProtocolError(Stage.TCP, f"TCP connect to {ip}:{port} failed: {reason}") from exc

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

    async def _wait_hello(self, link: DeviceLink) -> None:
        hello: asyncio.Future[object] = asyncio.ensure_future(link.hello.wait())
        ended: asyncio.Future[object] = link.ended  # type: ignore[assignment]
        limit = self.options.io_timeout_s + self.options.hello_timeout_s
        try:
            done, _ = await asyncio.wait(
                {hello, ended}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            hello.cancel()
        if link.ended.done():
            raise link.ended.result() or ProtocolError(Stage.HELLO, "closed before the Hello")
        if not done:
            raise ProtocolError(Stage.TIMEOUT, "the handshake did not finish in time")

    def _online(self, link: DeviceLink) -> None:
        self.status.connected = True
        self.status.connects += 1
        self.stage("cloud", "breathing cyan", "connected")
        self._after_connect(link.core)
        link.flush()
        link.online()
        if self.on_online is not None:
            self.on_online()
        after = self.options.setup_after_s
        if self._setup_due and after is not None:
            link.after(after, self.run_setup)  # no describe came first

    def session_started(self) -> None:
        """The handshake is done: from here the server's first describe runs setup() once
        answered (it often arrives with the Hello, before ``_online`` runs)."""
        self._setup_due = not self.app.registered and self.options.setup_after_s is not None

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
        if profile.requests_time:
            connection.request_time()
        if profile.posts_describe and self.app.registered:
            # Reconnecting after setup() ran: the describe goes out with the connect.
            connection.post_describe(
                messages.DescribeFlags.APPLICATION,
                self.app.describe(messages.DescribeFlags.APPLICATION),
            )
        for prefix, mine in profile.system_subscriptions:
            connection.subscribe(prefix, my_devices=mine)

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
        link = self.link
        if link is not None and self.status.connected and self.options.profile.posts_describe:
            link.core.post_describe(
                messages.DescribeFlags.APPLICATION,
                self.app.describe(messages.DescribeFlags.APPLICATION),
            )
            link.flush()

    def _hello_flags(self) -> int:
        flags = self.options.profile.hello_flags
        if self._restarted_by_update:
            self._restarted_by_update = False
            flags |= messages.HelloFlags.OTA_UPGRADE_SUCCESSFUL
        return flags

    # -- what the server asks -------------------------------------------------------------

    def answer(self, link: DeviceLink, event: Event) -> None:
        outcome = self.app.answer(link.core, event)
        if isinstance(event, DescribeRequested) and self._setup_due:
            # setup() runs once the first describe is answered and written.
            asyncio.get_running_loop().call_soon(self.run_setup)
        if outcome is UpdateOutcome.DISCONNECT:
            link.end(ProtocolError(Stage.SESSION, "lost the connection during the update"))
        elif outcome is UpdateOutcome.RESTART:
            # Device OS resets once the UpdateDone answer is out; its next Hello says the
            # update went in (flag 0x01), and setup() runs again after it connects.
            self._restarted_by_update = True
            self.app.registered = False
            link.flush()
            link.end(None)

    def release_update(self) -> None:
        """Let an update held by the ``hold_at_bytes`` fault go on."""
        if self.link is not None:
            self.app.updater.release(self.link.core)
            self.link.flush()

    def publish(self, name: str, data: str | None, *, public: bool = False, ttl: int = 60) -> None:
        if self.link is None or not self.status.connected:
            return
        self.link.publish(messages.EventInfo(name, data.encode() if data else None, ttl, public))


def _identity(store: KeyStore) -> tuple[str, bytes, keys.ServerAddress, str]:
    return (
        store.device_id,
        store.public_key_pem,
        store.server.address,
        crypto.fingerprint(store.server.public_key),
    )
