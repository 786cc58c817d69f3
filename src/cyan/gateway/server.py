"""The device gateway: TCP 5683, one ``DeviceSession`` per connection; the sessions' timers
on the process's one heap, and one sweep that writes presence to the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cyan.bus.events import CloudEvent
from cyan.cloud.router import Router
from cyan.diagnose import diagnose
from cyan.driver import Timers, process_timers
from cyan.gateway.admission import HandshakesPerAddress, Refusal
from cyan.gateway.failure_log import FailureLog
from cyan.gateway.session import DeviceSession
from cyan.gateway.writes import write_isolated
from cyan.protocol import ProtocolError, Stage, crypto, payloads
from cyan.rsa_pool import RsaPool, default_processes
from cyan.settings import GatewaySettings
from cyan.store import (
    ConnectionFailure,
    DroppedEvents,
    PresenceUpdate,
    Registration,
    SessionUpdate,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from cyan.store import Store

log = logging.getLogger("cyan.gateway")

SWEEP_INTERVAL_S = 0.5
LAST_HEARD_FLUSH_S = 30.0
FAILURE_HISTORY = 200
# Failures waiting for the store; if it is down for long, the oldest are dropped.
PENDING_FAILURES_MAX = 1_000
SHARED_DESCRIBES_MAX = 10_000
T = TypeVar("T")


class Gateway:
    def __init__(
        self,
        *,
        settings: GatewaySettings,
        server_key: crypto.RsaPrivateKey,
        router: Router,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        timers: Timers | None = None,
    ) -> None:
        self.settings = settings
        self.server_key = server_key
        processes = settings.rsa_processes
        if processes is None:
            processes = default_processes()
        # The key's private operations run in worker processes unless asked otherwise;
        # the connections then hold no key (None) and hand those steps to the pool.
        self.rsa = RsaPool(server_key, processes) if processes else None
        self.connection_key = None if self.rsa else server_key
        # None until the node has opened it (listen, then use_store).
        self._store = store
        self._store_ready = asyncio.Event()
        if store is not None:
            self._store_ready.set()
        self.router = router
        self.clock = clock
        self.monotonic = monotonic
        self.random_bytes = random_bytes
        # The sessions' deadlines; the running loop's shared heap unless one is given.
        self._timers = timers
        self.sessions: set[DeviceSession] = set()
        self.failures: deque[ConnectionFailure] = deque(maxlen=FAILURE_HISTORY)
        self.failure_log = FailureLog(settings.failure_log_interval_s)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._presence: dict[str, PresenceUpdate] = {}
        self._session_writes: dict[str, SessionUpdate] = {}
        self._failure_writes: deque[ConnectionFailure] = deque(maxlen=PENDING_FAILURES_MAX)
        self.handshakes = HandshakesPerAddress(settings.max_handshakes_per_address)
        # device id -> [over the rate, too big] since the last flush
        self._dropped: dict[str, list[int]] = {}
        # One flush at a time: a flush that returns has written everything queued before it,
        # including a batch the sweep's flush took and is still writing.
        self._flush_lock = asyncio.Lock()
        # Registered keys and owners, so a handshake of a known device never waits on the
        # database; refreshed from the store whenever an entry could be stale (below).
        self._registrations: dict[str, Registration] = {}
        # A fleet runs few distinct firmwares: devices with the same describe share one copy.
        self._shared: dict[object, Any] = {}
        self._last_heard_flush = monotonic()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and serve devices from the store given at construction."""
        await self.listen()
        await self.use_store(self.store)

    async def listen(self) -> None:
        """Accept devices: they get their nonce at once and wait at the key lookup until
        ``use_store`` (a node listens before it imports and opens its store, node.py)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: DeviceSession(self).driver,
            self.settings.host,
            self.settings.port,
            reuse_address=True,
            backlog=1024,
        )
        if self.rsa is not None:
            # In the background: devices are accepted at once, the first waiting briefly.
            self.spawn(self.rsa.start())
        self.router.on_registration_changed(self.forget_registration)
        log.info("device gateway listening on %s:%d", self.settings.host, self.port)

    async def use_store(self, store: Store) -> None:
        """Serve the handshakes that wait, and those to come, from ``store``."""
        # Loaded up front so that even a device's first handshake after a restart (every
        # device at once, after a crash) never waits on the database.
        self._registrations = await store.devices.all_registrations()
        self._store = store
        self._store_ready.set()
        self._sweeper = asyncio.create_task(self._sweep(), name="gateway-sweep")

    @property
    def store(self) -> Store:
        assert self._store is not None, "the gateway has no store yet"
        return self._store

    @property
    def timers(self) -> Timers:
        if self._timers is None:
            self._timers = process_timers()
        return self._timers

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # The sweep is asked to end, not cancelled: a cancel could land inside a store write
        # and leave its transaction holding SQLite's write lock while we flush below.
        self._stopping.set()
        if self._sweeper is not None:
            await self._sweeper
        for session in list(self.sessions):
            session.close("server shutting down")
        await asyncio.sleep(0)  # let connection_lost run for the closed transports
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush()
        if self.rsa is not None:
            await self.rsa.close()
        if self._server is not None:
            await self._server.wait_closed()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gateway task failed", exc_info=task.exception())

    # -- what sessions report -------------------------------------------------------------

    async def registered_key(
        self, device_id: str, offered_der: bytes | None
    ) -> tuple[crypto.RsaPublicKey | None, int | None]:
        """The key and owner a device is registered with.

        From memory when the device offers the key we hold; from the store when we hold
        none or it offers another one, since `cyan device add` in another process or the
        API may have changed it since.
        """
        await self._store_ready.wait()
        known = self._registrations.get(device_id)
        if known is None or (offered_der is not None and offered_der != known.public_key_der):
            known = await self.store.devices.registration(device_id)
            if known is None:
                self._registrations.pop(device_id, None)
                return None, None
            self._registrations[device_id] = known
        return crypto.load_public_key(known.public_key_der), known.owner_id

    def shared(self, value: T) -> T:
        """One shared copy of an equal tuple or dict (never mutated once shared)."""
        # The type is part of the key: an empty dict and an empty tuple are both "nothing"
        # as items, and must not come back as each other.
        key = (dict, tuple(value.items())) if isinstance(value, dict) else (type(value), value)
        if len(self._shared) > SHARED_DESCRIBES_MAX:
            self._shared.clear()
        existing: T = self._shared.setdefault(key, value)
        return existing

    def forget_registration(self, device_id: str) -> None:
        """Read the device's key and owner from the store at its next handshake."""
        self._registrations.pop(device_id, None)

    def device_online(self, session: DeviceSession) -> None:
        live = session.live
        old = self.router.attach(live.device_id, session)
        if old is not None:
            log.info("device %s connected again; closing its old connection", live.device_id)
            old.close("replaced by a new connection from the same device")
        log.info(
            "device %s online from %s (platform %d, product %d v%d)",
            live.device_id,
            live.remote_ip,
            live.platform_id,
            live.product_id,
            live.product_firmware_version,
        )
        self._presence.pop(live.device_id, None)
        # A new connection supersedes whatever an older one had still queued.
        self._session_writes[live.device_id] = SessionUpdate(
            live.device_id,
            ip=live.remote_ip,
            handshake_at=live.connected_at,
            platform_id=live.platform_id,
            product_id=live.product_id,
            product_firmware_version=live.product_firmware_version,
            # Known at once from the long Hello of Device OS ≥ 3; else from the describe.
            system_firmware_version=live.system_version,
        )

    def device_described(self, session: DeviceSession, description: payloads.Description) -> None:
        live = session.live
        pending = self._session_writes.get(live.device_id, SessionUpdate(live.device_id))
        if description.functions is not None:
            pending = replace(pending, functions=live.functions, variables=live.variables)
        if description.system and isinstance(description.system.get("m"), list):
            pending = replace(
                pending, system_firmware_version=live.system_version, modules=live.modules
            )
        self._session_writes[live.device_id] = pending

    def device_offline(self, device_id: str, session: DeviceSession) -> None:
        if self.router.detach(device_id, session):
            log.info("device %s offline", device_id)
            self._presence[device_id] = PresenceUpdate(device_id, False, session.live.last_heard)

    def publish(self, event: CloudEvent) -> None:
        self.router.publish(event)

    def event_dropped(self, device_id: str, name: str, why: Refusal) -> None:
        """Count an event the device may not publish (admission.py); said once a flush."""
        counts = self._dropped.get(device_id)
        if counts is None:
            counts = self._dropped[device_id] = [0, 0]
            log.warning("device %s: event %r dropped, %s (counted)", device_id, name, why.value)
        counts[why is Refusal.TOO_BIG] += 1

    async def redeem_claim_code(self, device_id: str, code: str) -> None:
        """A device presented the claim code a setup app gave it (spark/device/claim/code)."""
        owner_id = await self.store.claims.redeem(code, device_id)
        if owner_id is None:
            log.warning(
                "device %s presented a claim code that is unknown, spent or expired", device_id
            )
            return
        log.info("device %s claimed by user %d with a claim code", device_id, owner_id)
        self.router.registration_changed(device_id, owner_id)

    def connection_failed(self, error: ProtocolError, remote_ip: str) -> None:
        """Log a connection's failure (once an interval per address and stage, the rest
        counted: failure_log.py) and keep it. One that never named a device is stored as it
        is logged: a scanner's thousand failures a second would otherwise be a thousand
        rows a second, written on the loop's time."""
        stage = error.stage.value

        def line() -> str:
            who = f"device {error.device_id}" if error.device_id else "connection"
            return f"{who} from {remote_ip} failed at stage {stage}: {diagnose(error).sentence()}"

        logged = self.failure_log.failed(remote_ip, stage, line, error.reason, self.monotonic())
        self.record_failure(error, remote_ip, stored=logged or error.device_id is not None)

    def record_failure(self, error: ProtocolError, remote_ip: str, stored: bool = True) -> None:
        """Keep a failure in memory, and with ``stored`` in the store too."""
        if error.device_id is not None and error.stage is Stage.HELLO:
            # A device that drops us after the key exchange may hold a key that was
            # replaced behind our cache (a Core sends none to compare): look it up afresh.
            self.forget_registration(error.device_id)
        failure = ConnectionFailure(
            datetime.now(UTC), remote_ip, error.device_id, error.stage.value, error.reason
        )
        self.failures.append(failure)
        if stored:
            self._failure_writes.append(failure)

    # -- the sweep: presence to the store ---------------------------------------------------

    async def _sweep(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SWEEP_INTERVAL_S)
            if self._stopping.is_set():
                return
            now = self.monotonic()
            self.failure_log.flush(now)
            if now - self._last_heard_flush > LAST_HEARD_FLUSH_S:
                self._last_heard_flush = now
                for session in list(self.sessions):
                    if session.is_online:
                        live = session.live
                        self._presence.setdefault(
                            live.device_id, PresenceUpdate(live.device_id, True, live.last_heard)
                        )
            if self.pending_writes:
                try:
                    await self.flush()
                except Exception:  # the store may be briefly unavailable; try again next sweep
                    log.exception("writing device state to the store failed")

    @property
    def pending_writes(self) -> int:
        return (
            len(self._presence)
            + len(self._session_writes)
            + len(self._failure_writes)
            + len(self._dropped)
        )

    async def flush(self) -> None:
        """Write queued handshakes, describes, presence and failures, in that order.

        A batch the database refuses is written again record by record, so one bad record
        (logged, then dropped) never holds back the others; only a store that cannot be
        reached keeps everything queued for the next sweep (and raises).
        """
        if self._store is None:
            return  # stopped before it had a store: nothing it queued can be written
        async with self._flush_lock:
            await self._write_queued()

    async def _write_queued(self) -> None:
        sessions, self._session_writes = list(self._session_writes.values()), {}
        presence, self._presence = list(self._presence.values()), {}
        failures = list(self._failure_writes)
        self._failure_writes.clear()
        dropped, self._dropped = self._dropped, {}
        try:
            now = datetime.fromtimestamp(self.clock(), UTC)
            counts = [DroppedEvents(d, rate, big, now) for d, (rate, big) in dropped.items()]
            await write_isolated("dropped events", self.store.presence.count_dropped_events, counts)
            dropped = {}
            await write_isolated("device sessions", self.store.presence.record_sessions, sessions)
            sessions = []
            await write_isolated("presence", self.store.presence.record, presence)
            presence = []
            await write_isolated("connection failures", self.store.failures.record, failures)
        except StoreUnavailable:
            self._failure_writes.extendleft(reversed(failures))
            for device_id, (rate, big) in dropped.items():
                counts_now = self._dropped.setdefault(device_id, [0, 0])
                counts_now[0] += rate
                counts_now[1] += big
            # Put back what was not written, unless newer state arrived meanwhile.
            for update in sessions:
                self._session_writes.setdefault(update.device_id, update)
            for change in presence:
                self._presence.setdefault(change.device_id, change)
            raise
