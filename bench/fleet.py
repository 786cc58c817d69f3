"""A device fleet for the benchmarks: Cyan's own virtual device (``cyan.device``), the one
`cyan serve --demo` and the tests run, set up for load: no heartbeat, no time request, no
events or subscriptions on connect, Tinker registered from the start (setup() has run).

Every member's connection goes through the shared driver and its timers sit on the one
heap per process, so an idle fleet wakes only for its keepalives. ``Member`` reads the
times each stage was reached from the device's status.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path

from bench.figures import HOST, clock
from bench.processes import child_main, serve_control
from cyan.device import PROFILES, DeviceOptions, VirtualDevice
from cyan.driver import Timers
from cyan.keydir import KeyStore
from cyan.protocol import crypto, keys

# How a bench device writes: Nagle off (asyncio's default for its connections); as Device
# OS does, Nagle on and the empty ACK and the answer as two writes (protocol.md §7.1); or
# Nagle on and both in one write.
NODELAY, TWO_SEGMENT, ONE_SEGMENT = "nodelay", "two-segment", "one-segment"

# Device OS 2.3.1's Hello (so the server asks for one describe and schedules no more),
# with nothing sent unasked after it.
BENCH_PROFILE = replace(
    PROFILES["2.3.1"],
    posts_describe=False,
    connect_events=(),
    system_subscriptions=(),
    requests_time=False,
)
# The members' key directory: never written (bench keys live in memory), only looked at
# for a firmware.json, which is not there.
KEYLESS_DIR = Path(os.devnull)


def bench_options(port: int, writes: str = NODELAY) -> DeviceOptions:
    return DeviceOptions(
        server=f"{HOST}:{port}",
        profile=BENCH_PROFILE,
        heartbeat_s=None,
        setup_after_s=None,
        nagle=writes != NODELAY,
        coalesce_replies=writes == ONE_SEGMENT,
    )


class Member:
    """One virtual device of the fleet and the times its stages were reached."""

    __slots__ = ("closed_by_us", "device", "error", "fleet", "task")

    def __init__(self, fleet: Fleet, device: VirtualDevice) -> None:
        self.fleet = fleet
        self.device = device
        self.error: str | None = None
        self.closed_by_us = False
        self.task: asyncio.Task[None] | None = None

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def _at(self, what: str) -> float:
        return self.device.status.times.get(what, 0.0)

    @property
    def t_start(self) -> float:
        return self._at("start")

    @property
    def t_connected(self) -> float:
        return self._at("connected")

    @property
    def t_session(self) -> float:
        return self._at("session")

    @property
    def t_hello(self) -> float:
        return self._at("hello")

    @property
    def t_described(self) -> float:
        return self._at("described")

    @property
    def t_closed(self) -> float:
        return self._at("closed")

    @property
    def calls(self) -> int:
        return self.device.status.calls

    def close(self) -> None:
        self.closed_by_us = True
        if self.device.link is not None:
            self.device.link.end(None)


@dataclass
class ConnectReport:
    attempted: int
    started: int
    completed: int
    failed: int
    unfinished: int
    first_start: float
    last_hello: float
    hit_deadline: bool


@dataclass
class Fleet:
    """Many virtual devices against one gateway, connected with a cap on those in flight."""

    server_public_key: crypto.RsaPublicKey
    devices: list[Member] = field(default_factory=list)
    lost: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    # The members' one heap of timers, on the benchmarks' clock.
    timers: Timers = field(default_factory=lambda: Timers(clock))

    @property
    def calls(self) -> int:
        return sum(member.calls for member in self.devices)

    def add(self, device_id: str, key: crypto.RsaPrivateKey, writes: str = NODELAY) -> Member:
        # The address in the image is never read: options.server names the gateway.
        image = keys.ServerKeyImage(self.server_public_key, keys.ServerAddress(HOST, None))
        device = VirtualDevice(
            KeyStore(KEYLESS_DIR, device_id, key, image),
            bench_options(0, writes),
            timers=self.timers,
        )
        device.app.registered = True
        member = Member(self, device)
        self.devices.append(member)
        return member

    async def connect(
        self,
        devices: Sequence[Member],
        port: int,
        *,
        concurrency: int,
        deadline: float,
    ) -> ConnectReport:
        """Connect ``devices``, at most ``concurrency`` handshaking at once, until ``deadline``.

        A device leaves the in-flight set when the server's Hello arrives or it fails; it
        stays connected after that (one attempt each: a member never reconnects).
        """
        gate = asyncio.Semaphore(concurrency)
        started = 0

        async def one(member: Member) -> None:
            nonlocal started
            async with gate:
                started += 1
                device = member.device
                device.options = replace(device.options, server=f"{HOST}:{port}")
                online = asyncio.Event()
                device.on_online = online.set
                member.task = asyncio.create_task(self._attempt(member))
                waiting = asyncio.ensure_future(online.wait())
                await asyncio.wait({waiting, member.task}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()

        tasks = [asyncio.create_task(one(member)) for member in devices]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - clock()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        hellos = [d.t_hello for d in devices if d.t_hello]
        starts = [d.t_start for d in devices if d.t_start]
        return ConnectReport(
            attempted=len(devices),
            started=started,
            completed=len(hellos),
            failed=sum(1 for d in devices if d.error is not None),
            unfinished=sum(1 for d in devices if not d.t_hello and d.error is None),
            first_start=min(starts, default=math.nan),
            last_hello=max(hellos, default=math.nan),
            hit_deadline=bool(pending),
        )

    async def _attempt(self, member: Member) -> None:
        error = await member.device.connect_once()
        if not member.t_hello:
            why = f"{error.stage.value}: {error.reason}" if error else "closed"
            member.error = why
            self.failures[why.split(":")[0]] += 1
        elif not member.closed_by_us:
            self.lost += 1

    async def wait_described(self, devices: Sequence[Member], deadline: float) -> bool:
        """Until every device that got the Hello has its describe ACKed, or ``deadline``."""
        while clock() < deadline:
            if all(d.t_described or not d.t_hello or d.t_closed for d in devices):
                return True
            await asyncio.sleep(0.02)
        return False

    def close(self, devices: Sequence[Member] | None = None) -> None:
        for member in self.devices if devices is None else devices:
            member.close()


# -- a process holding devices that answer calls --------------------------------------------


def device_fleet_main(
    conn: Connection,
    port: int,
    server_public_der: bytes,
    devices: list[tuple[str, bytes]],
    writes: str = NODELAY,
) -> None:
    """Child: connect ``devices`` (id, private key DER), answer the server until stop."""
    child_main(conn, lambda: _device_fleet(conn, port, server_public_der, devices, writes))


async def _device_fleet(
    conn: Connection,
    port: int,
    server_public_der: bytes,
    devices: list[tuple[str, bytes]],
    writes: str,
) -> None:
    fleet = Fleet(crypto.load_public_key(server_public_der))
    members = [
        fleet.add(device_id, crypto.load_private_key(der), writes) for device_id, der in devices
    ]
    deadline = clock() + 30
    report = await fleet.connect(members, port, concurrency=len(members), deadline=deadline)
    if report.completed != len(members) or not await fleet.wait_described(members, deadline):
        raise RuntimeError(f"devices did not come online: {report}, {dict(fleet.failures)}")
    conn.send({"ok": True, "pid": os.getpid()})
    try:
        await serve_control(
            conn,
            {
                "stats": lambda: {
                    "calls": fleet.calls,
                    "lost": fleet.lost,
                    "online": report.completed,
                }
            },
        )
    finally:
        fleet.close()
