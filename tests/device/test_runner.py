"""device/runner.py: the virtual device's connect loop, from Wi-Fi up to breathing cyan,
its reconnects, its stop (with a Goodbye on Device OS 2.x) and what it sends on connect."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from cyan.device import DeviceOptions, VirtualDevice
from cyan.device.faults import closed_port
from cyan.device.profiles import PROFILES
from cyan.device.tinker import FUNCTIONS
from cyan.driver import Timers
from cyan.keydir import KeyStore
from cyan.net.resolver import parse_dns_choice
from cyan.protocol import Stage, crypto
from cyan.protocol.events import DescribeReceived
from tests.device.test_link import QUIET_GATEWAY, advance, connected, fake_clock_device
from tests.dns import fake_dns
from tests.driver.test_connection import Recorder, listen
from tests.driver.test_timers import FakeClock
from tests.protocol.pair import server_key
from tests.system import LOOPBACK, Cloud, eventually, failures_at, running_cloud

STAGES = ["start", "connected", "session", "hello", "described"]


def run_task(cloud: Cloud) -> asyncio.Task[None]:
    return cloud.tasks[-1]


async def test_it_walks_every_stage_to_breathing_cyan(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(start=False, product_firmware_version=9)
        onlines: list[int] = []
        device.on_online = lambda: onlines.append(device.status.connects)
        assert (device.status.stage, device.status.led, device.link) == ("off", "off", None)
        cloud.start(device)
        await cloud.online(device)
        await eventually(lambda: "described" in device.status.times, 10, "described")
        status = device.status
        assert (status.stage, status.led, status.connects) == ("cloud", "breathing cyan", 1)
        assert status.last_error is None
        assert onlines == [1]
        times = [status.times[name] for name in STAGES]
        assert times == sorted(times)
        assert "closed" not in status.times
        assert status.server_time is not None  # it asked the time
        assert device.link is not None
        assert device.connection is device.link.core
        live = cloud.node.router.live(device.device_id)
        assert live is not None
        assert live.product_firmware_version == 9


async def test_it_reconnects_after_the_server_closes(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(start=False, heartbeat_s=3600)
        onlines: list[int] = []
        device.on_online = lambda: onlines.append(device.status.connects)
        cloud.start(device)
        link, session = await connected(cloud, device)
        first_start = device.status.times["start"]
        session.close("test: closed by the server")
        why = await asyncio.wait_for(link.ended, 10)
        await eventually(lambda: device.status.connects == 2, 15, "reconnected")
        assert device.status.last_error is why
        assert device.link is not link
        assert device.status.times["start"] > first_start
        assert onlines == [1, 2]
        await cloud.online(device)  # the new connection serves as the old one did


async def test_an_unreachable_server_is_retried_until_it_is_there(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        nowhere = f"{LOOPBACK}:{closed_port(LOOPBACK)}"
        device = await cloud.add_device(
            server=nowhere, backoff_initial_s=0.05, backoff_max_s=0.1, heartbeat_s=3600
        )
        await eventually(lambda: device.status.last_error is not None, 10, "a failed attempt")
        error = device.status.last_error
        assert error is not None
        assert error.stage is Stage.TCP
        assert f"TCP connect to {nowhere} failed" in error.reason
        first = device.status.times["start"]
        await eventually(lambda: device.status.times["start"] > first, 10, "another attempt")
        assert device.status.connects == 0
        # Each attempt reads the options anew: pointed at the server, it connects.
        here = f"{LOOPBACK}:{cloud.device_port}"
        device.options = dataclasses.replace(device.options, server=here)
        await cloud.online(device)
        assert device.status.connects == 1


@pytest.mark.parametrize("firmware", ["2.3.1", "0.7.0"])
async def test_stop_ends_the_run_with_a_goodbye_where_the_release_has_one(
    tmp_path: Path, firmware: str
) -> None:
    """0.7.0 has no Goodbye and just closes, after its Hello: neither is a failure."""
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(firmware=firmware, heartbeat_s=3600)
        await cloud.online(device)
        await device.stop()
        await asyncio.wait_for(run_task(cloud), 10)
        await eventually(lambda: cloud.node.router.live(device.device_id) is None, 10, "offline")
        await eventually(lambda: not cloud.node.gateway.sessions, 10, "the session gone")
        failures = [f for f in cloud.node.gateway.failures if f.device_id == device.device_id]
        assert failures == []
        assert device.status.connects == 1
        assert not device.status.connected


async def test_stop_while_it_cannot_connect_ends_the_run(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(
            server=f"{LOOPBACK}:{closed_port(LOOPBACK)}", backoff_initial_s=0.05
        )
        await eventually(lambda: device.status.last_error is not None, 10, "a failed attempt")
        await device.stop()
        await asyncio.wait_for(run_task(cloud), 10)
        device.publish("test/after-stop", "x")  # not connected: nothing is sent, nothing fails
        assert device.status.connects == 0


async def test_stalled_handshakes_time_out_then_it_connects(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, handshake_timeout_s=1.0) as cloud:
        device = await cloud.add_device(stall_handshakes=1, backoff_initial_s=0.05)
        await cloud.online(device, timeout_s=20)
        error = device.status.last_error
        assert error is not None
        assert error.stage is Stage.TIMEOUT
        assert "on purpose: --stall-handshakes" in error.reason
        assert device.status.connects == 1
        # The server saw it stall: its handshake deadline closed the first connection.
        assert failures_at(cloud, "timeout")


async def test_setup_runs_once_the_first_describe_is_answered(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        device, _clock = await fake_clock_device(
            cloud, heartbeat_s=None, setup_after_s=5.0, idle_ping_s=1000.0
        )
        await connected(cloud, device)
        # The gateway asks for a describe right after the Hello: setup() follows its answer,
        # long before setup_after_s (the fake clock never moves).
        await eventually(lambda: device.app.registered, 10, "setup() after the describe")

        def listed() -> bool:
            live = cloud.node.router.live(device.device_id)
            return live is not None and live.functions == tuple(FUNCTIONS)

        # Device OS 2.x posts its describe once setup() ran, unasked.
        await eventually(listed, 10, "the posted describe")


async def test_setup_runs_setup_after_s_after_the_connect_when_no_describe_comes(
    tmp_path: Path,
) -> None:
    keystore = KeyStore.create(
        tmp_path / "keys", server_key().public_key(), host=LOOPBACK, port=None
    )
    # Shakes hands and says Hello, and never asks the device for a describe.
    server = Recorder(accepted_key=keystore.device_key.public_key())
    listening, port = await listen(server)
    clock = FakeClock()
    options = DeviceOptions(
        server=f"{LOOPBACK}:{port}",
        profile=PROFILES["2.3.1"],
        heartbeat_s=None,
        setup_after_s=5.0,
        idle_ping_s=1000.0,
    )
    device = VirtualDevice(keystore, options, timers=Timers(clock))
    running = asyncio.create_task(device.run())
    try:
        await eventually(lambda: device.status.connected, 10, "connected")
        assert not device.app.registered
        assert advance(device, clock, 4.99) == 0
        assert not device.app.registered
        assert advance(device, clock, 0.01) == 1
        assert device.app.registered

        def posted() -> bool:
            return any(
                isinstance(e, DescribeReceived) and e.description.functions for e in server.events
            )

        await eventually(posted, 10, "the describe posted after setup()")
        assert server.failures == []  # the device kept to the protocol throughout
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        listening.close()
        await listening.wait_closed()


async def test_a_claim_code_is_sent_after_the_handshake(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        ada = await cloud.node.store.users.ensure("ada")
        code = await cloud.node.store.claims.create(ada.id)
        device = await cloud.add_device(start=False, register=False, heartbeat_s=3600)
        public_key = crypto.public_key_der(device.keys.device_key.public_key())
        await cloud.node.store.devices.add(device.device_id, public_key, owner_id=None)
        device.options = dataclasses.replace(device.options, claim_code=code)
        cloud.start(device)

        async def claimed() -> bool:
            record = await cloud.node.store.devices.get(device.device_id)
            return record is not None and record.owner_id == ada.id

        await eventually(claimed, 10, "claimed by ada")


async def test_a_name_that_does_not_resolve_falls_back_to_the_pinned_address(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud, fake_dns() as dns_server:
        device = await cloud.add_device(
            server=f"cyan-test.invalid:{cloud.device_port}",
            dns_server=parse_dns_choice(dns_server.address),
            dns_fallback=True,
            heartbeat_s=3600,
        )
        await cloud.online(device)
        assert dns_server.queries  # it asked, heard "no such name", and used 127.0.0.1
        assert device.status.last_error is None


async def test_without_fallback_a_name_that_does_not_resolve_is_a_dns_failure(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud, fake_dns() as dns_server:
        device = await cloud.add_device(
            server=f"cyan-test.invalid:{cloud.device_port}",
            dns_server=parse_dns_choice(dns_server.address),
            heartbeat_s=3600,
        )
        await eventually(lambda: device.status.last_error is not None, 10, "a failed attempt")
        error = device.status.last_error
        assert error is not None
        assert error.stage is Stage.DNS
        assert device.status.connects == 0
