"""One Cyan node: store, gateway, router, bus and API in one process (design.md).

``cyan serve`` runs a Node; the system tests run the same Node on loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.datadir import load_or_create_server_key, prepare
from cyan.errors import CyanError
from cyan.gateway import Gateway
from cyan.protocol import crypto
from cyan.settings import ADMIN_USERNAME, Settings

if TYPE_CHECKING:
    from cyan.api.serving import ApiServer
    from cyan.cloud.flash import Flasher
    from cyan.device import VirtualDevice
    from cyan.keydir import KeyStore
    from cyan.store import Store

log = logging.getLogger("cyan.node")


class CannotListen(CyanError):
    """A port this node needs is taken, or the address is not this machine's."""


def _cannot_listen(what: str, option: str, host: str, port: int, exc: OSError) -> CannotListen:
    return CannotListen(
        f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}",
        fix=f"Stop what holds the port (another cyan serve?) or pick another with {option}.",
    )


async def _import_on_a_thread(module: str) -> None:
    """Import ``module`` on a worker thread: the loop keeps serving devices meanwhile (an
    import holds the GIL, but hands it back to the loop's thread every few milliseconds)."""
    await asyncio.to_thread(importlib.import_module, module)


DEMO_DIR = "demo-devices"
# Allocations between collections of the youngest generation (Python's default: 700).
YOUNG_COLLECTION_EVERY = 10_000


@dataclass
class Node:
    settings: Settings
    demo_devices: int = 0
    store: Store = field(init=False)
    router: Router = field(init=False)
    bus: EventBus = field(init=False)
    gateway: Gateway = field(init=False)
    flasher: Flasher = field(init=False)
    devices: list[VirtualDevice] = field(default_factory=list, init=False)
    _api: ApiServer | None = field(default=None, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    async def start(self) -> None:
        prepare(self.settings.data_dir)
        server_key = load_or_create_server_key(self.settings.data_dir)
        gateway_settings = self.settings.gateway
        self.router = Router(
            function_timeout_s=gateway_settings.function_timeout_s,
            variable_timeout_s=gateway_settings.variable_timeout_s,
        )
        self.bus = EventBus()
        self.router.add_listener(self.bus.publish)
        self.gateway = Gateway(settings=gateway_settings, server_key=server_key, router=self.router)
        try:
            await self.gateway.listen()
        except OSError as exc:
            host, port = gateway_settings.host, gateway_settings.port
            raise _cannot_listen("devices", "--device-port", host, port, exc) from exc
        # Devices are accepted from here on; their handshakes wait for the store at the key
        # lookup. What the store and the API import (SQLAlchemy, FastAPI, uvicorn: most of
        # a start) is imported on a thread, so the loop answers devices meanwhile.
        try:
            await _import_on_a_thread("cyan.store.store")
            from cyan.store import Store

            self.store = await Store.open(self.settings.database_url)
        except BaseException:
            await self.gateway.stop()
            raise
        # Presence lives in memory; whatever the store says from a previous run is stale.
        await self.store.presence.mark_all_offline()
        await self.gateway.use_store(self.store)
        from cyan.cloud.flash import Flasher

        self.flasher = Flasher(self.router, self.store, self.settings.data_dir)
        await self.flasher.recover()
        try:
            await self._start_api()
        except OSError as exc:
            await self.gateway.stop()
            await self.store.close()
            host, port = self.settings.api.host, self.settings.api.port
            raise _cannot_listen("the API", "--api-port", host, port, exc) from exc
        if self.demo_devices:
            await self._start_demo_devices(self.demo_devices)

    async def _start_api(self) -> None:
        await _import_on_a_thread("cyan.api.serving")
        from cyan.api.serving import start_api

        self._api, task = await start_api(
            store=self.store,
            router=self.router,
            bus=self.bus,
            settings=self.settings.api,
            flasher=self.flasher,
            server_key=self.gateway.server_key,
            device_port=self.gateway.port,
        )
        self._tasks.append(task)

    @property
    def api_port(self) -> int:
        assert self._api is not None
        return int(self._api.servers[0].sockets[0].getsockname()[1])

    async def _start_demo_devices(self, count: int) -> None:
        from cyan.device import DeviceOptions, VirtualDevice

        admin = await self.store.users.ensure(ADMIN_USERNAME)
        server_public = self.gateway.server_key.public_key()
        for index in range(1, count + 1):
            directory = self.settings.data_dir / DEMO_DIR / f"demo-{index}"
            keystore = _demo_keystore(directory, server_public, self.gateway.port)
            record = await self.store.devices.get(keystore.device_id)
            if record is None or await self.store.devices.key(keystore.device_id) is None:
                await self.store.devices.add(
                    keystore.device_id, _der(keystore), owner_id=admin.id, name=f"demo-{index}"
                )
            device = VirtualDevice(keystore, DeviceOptions(server=f"127.0.0.1:{self.gateway.port}"))
            self.devices.append(device)
            self._tasks.append(asyncio.create_task(device.run(), name=f"demo-{index}"))

    async def stop(self) -> None:
        for device in self.devices:
            await device.stop()
        if self._api is not None:
            self._api.should_exit = True
        # Running updates end as recorded failures (each device keeps its old firmware).
        await self.flasher.stop()
        # Ends every open event stream, so uvicorn has no long response to wait for.
        self.bus.close()
        await self.gateway.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(task, 5)
        await self.store.close()


def _demo_keystore(directory: Path, server_public: crypto.RsaPublicKey, port: int) -> KeyStore:
    from cyan.keydir import KeyStore

    if (directory / "device-key.der").exists():
        return KeyStore.load(directory)
    return KeyStore.create(directory, server_public, host="127.0.0.1", port=port)


def _der(keystore: KeyStore) -> bytes:
    return crypto.public_key_der(keystore.device_key.public_key())


def tune_gc_for_serving() -> None:
    """The garbage collector for a process that serves from here on.

    What start-up built (modules, the app, the ORM's tables: about 120k objects) is
    frozen out of the full passes, each of which walked all of it, 70-80 ms with the
    loop stopped, every few hundred connections. And the youngest generation is
    collected every 10,000 allocations instead of 700: most of a request's objects die
    by reference count before then, and full passes, which a server with 3,000 open
    streams pays 0.3 s for, come 14 times less often (bench/abuse.py, streams then quiet:
    call p99 368 ms before, 99-129 ms after).
    """
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, 10)
