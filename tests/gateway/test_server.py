"""gateway/server.py: the Gateway itself, on loopback with a real SQLite store.

The rig below (also used by test_session.py and test_deadlines.py) runs the real Gateway
with its sessions' timers on a fake clock, so no deadline fires unless a test moves the
clock; ``started=False`` leaves the sweep off (only ``flush()`` writes) and listens with
the same ``DeviceSession`` factory that ``start()`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cyan.cloud.router import Router
from cyan.driver import Timers, process_timers
from cyan.gateway import Gateway
from cyan.gateway.server import FAILURE_HISTORY, LAST_HEARD_FLUSH_S, SHARED_DESCRIBES_MAX
from cyan.gateway.session import DeviceSession
from cyan.keydir import KeyStore
from cyan.protocol import ProtocolError, Stage, crypto, keys, messages, payloads
from cyan.protocol.events import Event, PingAcknowledged
from cyan.settings import GatewaySettings
from cyan.store import Store, StoreUnavailable
from tests.driver.test_timers import FakeClock
from tests.system import LOOPBACK, RawDevice, eventually

E = TypeVar("E", bound=Event)
# Device OS 1.5: no Goodbye, never describes itself (no flag 0x20).
OLD_HELLO = messages.HelloInfo(6, 5, messages.HelloFlags.DIAGNOSTICS, 6)
# Device OS 2.x: describes itself once setup() ran.
NEW_HELLO = messages.HelloInfo(
    6, 7, messages.HelloFlags.GOODBYE | messages.HelloFlags.DEVICE_INITIATED_DESCRIBE, 6
)


@functools.cache
def server_key() -> crypto.RsaPrivateKey:
    return keys.generate_server_key()


def der(keystore: KeyStore) -> bytes:
    return crypto.public_key_der(keystore.device_key.public_key())


@dataclass
class Rig:
    gateway: Gateway
    store: Store
    router: Router
    clock: FakeClock
    tmp: Path
    port: int
    stopped: bool = False
    _made: int = field(default=0)

    @property
    def timers(self) -> Timers:
        return self.gateway.timers

    def advance(self, seconds: float) -> int:
        """Move the sessions' clock on and run what fell due; how many callbacks ran."""
        self.clock.now += seconds
        return self.timers.run_due()

    async def keystore(self, *, register: bool = True, owner_id: int | None = None) -> KeyStore:
        self._made += 1
        keystore = KeyStore.create(
            self.tmp / f"keys-{self._made}",
            self.gateway.server_key.public_key(),
            host=LOOPBACK,
            port=self.port,
        )
        if register:
            await self.store.devices.add(keystore.device_id, der(keystore), owner_id=owner_id)
        return keystore

    async def online(
        self, keystore: KeyStore | None = None, hello: messages.HelloInfo = NEW_HELLO
    ) -> tuple[RawDevice, DeviceSession]:
        keystore = keystore or await self.keystore()
        raw = await RawDevice.open(self.port)
        await raw.handshake(keystore, hello=hello)
        await eventually(lambda: self.router.live(keystore.device_id) is not None, 10, "online")
        await settle(raw)
        return raw, self.session_of(keystore.device_id)

    def session_of(self, device_id: str) -> DeviceSession:
        (session,) = [s for s in self.gateway.sessions if s.device_id == device_id]
        return session

    async def stop(self) -> None:
        self.stopped = True
        await self.gateway.stop()


@contextlib.asynccontextmanager
async def gateway_rig(
    tmp_path: Path,
    *,
    started: bool = True,
    random_bytes: Callable[[int], bytes] = os.urandom,
    **settings: Any,
) -> AsyncIterator[Rig]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}")
    router = Router(function_timeout_s=5.0, variable_timeout_s=5.0)
    clock = FakeClock()
    gateway = Gateway(
        settings=GatewaySettings(host=LOOPBACK, port=0, **settings),
        server_key=server_key(),
        store=store,
        router=router,
        monotonic=clock,
        random_bytes=random_bytes,
        timers=Timers(clock),
    )
    server: asyncio.Server | None = None
    if started:
        await gateway.start()
        port = gateway.port
    else:
        server = await asyncio.get_running_loop().create_server(
            lambda: DeviceSession(gateway).driver, LOOPBACK, 0
        )
        port = int(server.sockets[0].getsockname()[1])
    rig = Rig(gateway, store, router, clock, tmp_path, port)
    try:
        yield rig
    finally:
        try:
            if not rig.stopped:
                await gateway.stop()
        finally:
            if server is not None:
                server.close()
                await server.wait_closed()
            await store.close()


async def settle(raw: RawDevice) -> None:
    """A ping and its answer: what either end sent before has arrived and been handled."""
    assert raw.connection is not None
    raw.connection.ping()
    await next_event(raw, PingAcknowledged)


async def next_event(raw: RawDevice, kind: type[E], timeout_s: float = 10.0) -> E:
    """The first event of ``kind`` the device's core reported (taken off its list)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        for event in raw.events:
            if isinstance(event, kind):
                raw.events.remove(event)
                return event
        await raw.pump(deadline - asyncio.get_running_loop().time())


# -- lifecycle --------------------------------------------------------------------------------


async def test_start_listens_and_stop_closes_sessions_writes_and_the_port(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        assert rig.gateway.sessions == {session}
        port = rig.gateway.port
        await rig.stop()
        assert await raw.closed_by_server()
        assert rig.gateway.sessions == set()
        # Closed by the server on purpose: no failure, and the device is offline in the store.
        assert list(rig.gateway.failures) == []
        assert rig.gateway.pending_writes == 0
        record = await rig.store.devices.get(session.live.device_id)
        assert record is not None
        assert record.last_handshake_at is not None
        assert not record.online
        with pytest.raises(ConnectionRefusedError):
            await asyncio.get_running_loop().create_connection(asyncio.Protocol, LOOPBACK, port)


async def test_devices_are_accepted_before_the_store_opens_and_served_once_it_does(
    tmp_path: Path,
) -> None:
    """A node listens before it opens its store (node.py): a device that connects
    meanwhile gets its nonce at once and its handshake waits at the key lookup."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}")
    router = Router(function_timeout_s=5.0, variable_timeout_s=5.0)
    gateway = Gateway(
        settings=GatewaySettings(host=LOOPBACK, port=0, rsa_processes=0),
        server_key=server_key(),
        router=router,
    )
    try:
        await gateway.listen()
        keystore = KeyStore.create(
            tmp_path / "keys", server_key().public_key(), host=LOOPBACK, port=gateway.port
        )
        await store.devices.add(keystore.device_id, der(keystore), owner_id=None)
        raw = await RawDevice.open(gateway.port)
        assert len(await raw.read_exactly(40)) == 40  # the nonce, with no store yet
        handshake = asyncio.create_task(raw.handshake(keystore, hello=NEW_HELLO, timeout_s=30))
        # It cannot finish: the device's key is only in the store nobody gave the gateway.
        done, _ = await asyncio.wait({handshake}, timeout=0.5)
        assert not done
        await gateway.use_store(store)
        await handshake
        await eventually(lambda: router.live(keystore.device_id) is not None, 10, "online")
    finally:
        await gateway.stop()
        await store.close()


async def test_a_gateway_stopped_before_it_had_a_store_stops_cleanly(tmp_path: Path) -> None:
    gateway = Gateway(
        settings=GatewaySettings(host=LOOPBACK, port=0, rsa_processes=0),
        server_key=server_key(),
        router=Router(function_timeout_s=5.0, variable_timeout_s=5.0),
    )
    await gateway.listen()
    raw = await RawDevice.open(gateway.port)
    await raw.read_exactly(40)
    await gateway.stop()
    assert await raw.closed_by_server()


async def test_stop_waits_for_the_tasks_it_spawned(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        release = asyncio.Event()
        finished: list[str] = []

        async def work() -> None:
            await release.wait()
            finished.append("done")

        rig.gateway.spawn(work())
        stopping = asyncio.ensure_future(rig.stop())
        done, _ = await asyncio.wait({stopping}, timeout=0.5)
        assert not done  # still waiting on the spawned task
        release.set()
        await asyncio.wait_for(stopping, 10)
        assert finished == ["done"]


async def test_a_spawned_task_that_fails_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise ValueError("test: broken task")

    async with gateway_rig(tmp_path) as rig:
        with caplog.at_level(logging.ERROR, logger="cyan.gateway"):
            rig.gateway.spawn(broken())
            await eventually(
                lambda: any("gateway task failed" in r.getMessage() for r in caplog.records), 5
            )
        (record,) = [r for r in caplog.records if "gateway task failed" in r.getMessage()]
        assert record.exc_info is not None
        assert "test: broken task" in str(record.exc_info[1])


async def test_the_sessions_set_follows_the_connections(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        first, one = await rig.online()
        second, two = await rig.online()
        assert rig.gateway.sessions == {one, two}
        first.close()
        await eventually(lambda: rig.gateway.sessions == {two}, 10, "the closed one gone")
        second.close()
        await eventually(lambda: not rig.gateway.sessions, 10, "both gone")


async def test_the_default_timers_are_the_loops_shared_heap(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        gateway = Gateway(
            settings=GatewaySettings(host=LOOPBACK, port=0),
            server_key=server_key(),
            store=rig.store,
            router=rig.router,
        )
        assert gateway.timers is process_timers()
        assert rig.gateway.timers is not process_timers()


# -- keys -------------------------------------------------------------------------------------


async def test_the_nonce_comes_from_random_bytes_and_the_server_key_signs(tmp_path: Path) -> None:
    handed_out: list[bytes] = []

    def recorded(count: int) -> bytes:
        handed_out.append(os.urandom(count))
        return handed_out[-1]

    async with gateway_rig(tmp_path, random_bytes=recorded) as rig:
        keystore = await rig.keystore()
        raw = await RawDevice.open(rig.port)
        nonce = await raw.read_exactly(40)
        assert nonce in handed_out
        # The handshake verifies with the public half of the key the gateway was given.
        assert rig.gateway.server_key is server_key()
        await raw.handshake(keystore, server_public=server_key().public_key(), hello=NEW_HELLO)
        await eventually(lambda: rig.router.live(keystore.device_id) is not None, 10)
        raw.close()


async def key_der(gateway: Gateway, device_id: str, offered: bytes | None) -> bytes | None:
    key, _ = await gateway.registered_key(device_id, offered)
    return crypto.public_key_der(key) if key is not None else None


async def test_registrations_are_loaded_at_start_and_kept_in_memory(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        owner = await rig.store.users.ensure("ada")
        keystore = await rig.keystore(owner_id=owner.id)
        fresh = Gateway(
            settings=GatewaySettings(host=LOOPBACK, port=0),
            server_key=server_key(),
            store=rig.store,
            router=Router(),
        )
        await fresh.start()
        try:
            # A new key in the store after start(): the one loaded at start is what counts
            # for a device offering the key we hold, or none (a Core).
            newest = crypto.public_key_der(keys.generate_device_key().public_key())
            await rig.store.devices.set_key(keystore.device_id, newest)
            assert await key_der(fresh, keystore.device_id, None) == der(keystore)
            assert await key_der(fresh, keystore.device_id, der(keystore)) == der(keystore)
            _, owner_id = await fresh.registered_key(keystore.device_id, None)
            assert owner_id == owner.id
            # Offering another key than the one held sends the gateway to the store.
            assert await key_der(fresh, keystore.device_id, newest) == newest
            assert await key_der(fresh, keystore.device_id, None) == newest
        finally:
            await fresh.stop()


async def test_forgetting_a_registration_sends_the_next_handshake_to_the_store(
    tmp_path: Path,
) -> None:
    async with gateway_rig(tmp_path) as rig:
        gateway = rig.gateway
        assert await gateway.registered_key(keys.new_device_id(), None) == (None, None)
        keystore = await rig.keystore()  # registered after start(): read from the store
        device_id = keystore.device_id
        assert await key_der(gateway, device_id, None) == der(keystore)
        forgets: list[Callable[[], None]] = [
            lambda: gateway.forget_registration(device_id),
            # start() hooked the gateway to the router's announcements.
            lambda: rig.router.registration_changed(device_id, None),
            # A device that drops us after the key exchange may hold a key replaced behind
            # our cache; a failure at any other stage says nothing of its key.
            lambda: gateway.record_failure(
                ProtocolError(Stage.HELLO, "test", device_id=device_id), "192.0.2.1"
            ),
        ]
        for forget in forgets:
            held = await key_der(gateway, device_id, None)
            newest = crypto.public_key_der(keys.generate_device_key().public_key())
            await rig.store.devices.set_key(device_id, newest)
            gateway.record_failure(
                ProtocolError(Stage.SESSION, "test", device_id=device_id), "192.0.2.1"
            )
            assert await key_der(gateway, device_id, None) == held
            forget()
            assert await key_der(gateway, device_id, None) == newest


def fresh(*names: str) -> tuple[str, ...]:
    """A new tuple object (literals of constants may be one object the compiler shares)."""
    return (*names,)


# -- shared describes -------------------------------------------------------------------------


async def test_shared_returns_one_copy_of_equal_values_by_type(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, started=False) as rig:
        share = rig.gateway.shared
        functions = fresh("digitalread", "digitalwrite")
        copy = fresh("digitalread", "digitalwrite")
        assert copy is not functions
        assert share(functions) is functions
        assert share(copy) is functions
        variables = {"uptime": "int32"}
        assert share(variables) is variables
        assert share(dict(variables)) is variables
        assert share({"uptime": "double"}) is not variables
        # An empty tuple and an empty dict are both "nothing", never each other.
        assert share(()) == ()
        nothing: dict[str, str] = share({})
        assert isinstance(nothing, dict)
        assert nothing == {}


async def test_shared_forgets_everything_past_its_bound(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, started=False) as rig:
        share = rig.gateway.shared
        first = share(fresh("first"))
        assert share(fresh("first")) is first
        for index in range(SHARED_DESCRIBES_MAX + 1):
            share(fresh(f"f{index}"))
        again = fresh("first")
        assert share(again) is again  # the cache was cleared: the new copy is kept


async def test_devices_with_the_same_describe_share_its_lists(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        body = payloads.encode_description(["f1", "f2"], {"v": payloads.VARIABLE_INT})
        sessions = []
        for _ in range(2):
            raw, session = await rig.online()
            assert raw.connection is not None
            raw.connection.post_describe(messages.DescribeFlags.APPLICATION, body)
            raw.flush()
            await eventually(functions_are(session, ("f1", "f2")), 10, "the describe")
            sessions.append(session)
        one, two = (s.live for s in sessions)
        assert one.functions is two.functions
        assert one.variables is two.variables


def functions_are(session: DeviceSession, functions: tuple[str, ...]) -> Callable[[], bool]:
    return lambda: session.live.functions == functions


# -- what reaches the store -------------------------------------------------------------------


async def test_flush_writes_handshakes_describes_presence_and_failures(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, started=False) as rig:
        gateway = rig.gateway
        before = datetime.now(UTC)
        raw, session = await rig.online(hello=messages.HelloInfo(6, 9, 0, 6))
        device_id = session.live.device_id
        assert gateway.pending_writes == 1
        await gateway.flush()
        assert gateway.pending_writes == 0
        record = await rig.store.devices.get(device_id)
        assert record is not None
        assert record.online
        assert record.last_ip == LOOPBACK
        assert record.last_handshake_at is not None
        assert record.last_handshake_at >= before - timedelta(seconds=1)
        assert (record.platform_id, record.product_id, record.product_firmware_version) == (6, 6, 9)

        assert raw.connection is not None
        module = {"f": "s", "n": "2", "v": 1512}
        raw.connection.post_describe(
            messages.DescribeFlags.APPLICATION | messages.DescribeFlags.SYSTEM,
            payloads.encode_description(["f"], {"v": payloads.VARIABLE_DOUBLE}, {"m": [module]}),
        )
        raw.flush()
        await eventually(lambda: gateway.pending_writes == 1, 10, "the describe queued")
        await gateway.flush()
        record = await rig.store.devices.get(device_id)
        assert record is not None
        assert (record.functions, record.variables) == (("f",), {"v": "double"})
        assert record.system_firmware_version == "1.5.2"
        assert record.modules == (module,)

        raw.reset()  # a failure (a clean close after the Hello is none)
        await eventually(lambda: not gateway.sessions, 10, "closed")
        assert gateway.pending_writes == 2  # the device offline, and its failure
        await gateway.flush()
        assert gateway.pending_writes == 0
        record = await rig.store.devices.get(device_id)
        assert record is not None
        assert not record.online
        assert record.last_heard is not None
        (failure,) = await rig.store.failures.for_device(device_id)
        assert (failure.stage, failure.remote_address) == ("session", LOOPBACK)
        assert failure.reason.startswith("connection lost: ")


async def test_an_unreachable_store_keeps_the_writes_queued(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, started=False) as rig:
        gateway = rig.gateway
        raw, _ = await rig.online()
        raw.reset()
        await eventually(lambda: not gateway.sessions, 10, "closed")
        queued = gateway.pending_writes
        assert queued == 3  # the handshake, the device offline and its failure
        await rig.store.close()
        with pytest.raises(StoreUnavailable):
            await gateway.flush()
        assert gateway.pending_writes == queued
        with pytest.raises(StoreUnavailable):
            await rig.stop()
        assert gateway.pending_writes == queued


async def test_the_sweep_writes_by_itself_and_last_heard_every_30_s(tmp_path: Path) -> None:
    # No ping when the clock jumps: the frame below is the last one heard.
    async with gateway_rig(tmp_path, idle_ping_s=1000.0) as rig:
        raw, session = await rig.online()
        device_id = session.live.device_id

        async def online_in_store() -> bool:
            record = await rig.store.devices.get(device_id)
            return record is not None and record.online

        async def last_heard() -> datetime | None:
            record = await rig.store.devices.get(device_id)
            return record.last_heard if record is not None else None

        await eventually(online_in_store, 10, "the sweep's write of the handshake")
        assert raw.connection is not None
        raw.connection.publish(messages.EventInfo("test/later", b"x", 60, public=False))
        raw.flush()
        heard = session.live.last_heard
        await eventually(lambda: session.live.last_heard > heard, 10, "the frame heard")
        heard = session.live.last_heard
        rig.clock.now += LAST_HEARD_FLUSH_S + 1

        async def written() -> bool:
            stored = await last_heard()
            return stored is not None and abs(stored - heard) < timedelta(milliseconds=1)

        await eventually(written, 10, "last_heard written by the sweep")


# -- failures and claims ----------------------------------------------------------------------


async def test_the_failure_history_is_bounded(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, started=False) as rig:
        for index in range(FAILURE_HISTORY + 5):
            rig.gateway.record_failure(ProtocolError(Stage.TCP, f"test {index}"), "192.0.2.7")
        failures = list(rig.gateway.failures)
        assert len(failures) == FAILURE_HISTORY
        assert failures[0].reason == "test 5"
        assert failures[-1].reason == f"test {FAILURE_HISTORY + 4}"
        assert {(f.stage, f.remote_address, f.device_id) for f in failures} == {
            ("tcp", "192.0.2.7", None)
        }
        # Every one of them still goes to the store, not only the ones kept in memory.
        assert rig.gateway.pending_writes == FAILURE_HISTORY + 5


async def test_a_scanners_repeated_failures_are_stored_once_an_interval_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage handshakes from one address: each kept in memory, one stored and logged per
    failure_log_interval_s, the rest counted in the line that ends the interval."""
    caplog.set_level(logging.WARNING, "cyan.gateway")
    async with gateway_rig(tmp_path) as rig:
        for _ in range(6):
            raw = await RawDevice.open(rig.port)
            await raw.read_exactly(40)
            raw.write(os.urandom(256))
            assert await raw.closed_by_server()
        await eventually(lambda: len(rig.gateway.failures) == 6, 10, "six failures")
        await rig.gateway.flush()
        (stored,) = await rig.store.failures.unnamed(remote_address=LOOPBACK)
        assert stored.stage == "handshake-decrypt"
        rig.clock.now += rig.gateway.settings.failure_log_interval_s
        rig.gateway.failure_log.flush(rig.clock.now)
        (summary,) = [
            r.getMessage() for r in caplog.records if "more connections" in r.getMessage()
        ]
        assert summary.startswith(f"5 more connections from {LOOPBACK} failed at stage ")


async def test_a_closed_connection_is_freed_at_once_not_at_its_deadlines(tmp_path: Path) -> None:
    """Its timers are cancelled and let go of it: held until its 10 s handshake deadline,
    a scanner's connections piled up (10,000 sessions) and slowed every GC pass."""
    async with gateway_rig(tmp_path) as rig:
        raw = await RawDevice.open(rig.port)
        await raw.read_exactly(40)
        (session,) = rig.gateway.sessions
        address = id(session)  # DeviceSession has slots and no weak references
        del session
        raw.write(os.urandom(256))
        assert await raw.closed_by_server()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session closed")
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, DeviceSession)]
        assert address not in map(id, alive)


async def test_a_claim_code_gives_the_device_to_its_user_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_rig(tmp_path) as rig:
        ada = await rig.store.users.ensure("ada")
        keystore = await rig.keystore(owner_id=None)
        changed: list[str] = []
        rig.router.on_registration_changed(changed.append)
        code = await rig.store.claims.create(ada.id)

        with caplog.at_level(logging.WARNING, logger="cyan.gateway"):
            await rig.gateway.redeem_claim_code(keystore.device_id, "not-a-code")
        assert changed == []
        assert any("unknown, spent or expired" in r.getMessage() for r in caplog.records)

        await rig.gateway.redeem_claim_code(keystore.device_id, code)
        assert changed == [keystore.device_id]
        record = await rig.store.devices.get(keystore.device_id)
        assert record is not None
        assert record.owner_id == ada.id
        await rig.gateway.redeem_claim_code(keystore.device_id, code)  # spent
        assert changed == [keystore.device_id]
