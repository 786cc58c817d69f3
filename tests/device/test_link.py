"""device/link.py: one connection of a virtual device, its keepalive, heartbeat and timers.

The device's timers run on a fake clock here (``fake_clock_device``): a ping, a heartbeat or
setup() falls due when the test moves the clock. The network and the gateway are real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

from cyan.bus.events import CloudEvent
from cyan.device import VirtualDevice
from cyan.device.link import DeviceLink
from cyan.driver import Timers
from cyan.gateway.session import DeviceSession
from cyan.protocol import ProtocolError, Stage
from tests.driver.test_timers import FakeClock
from tests.system import Cloud, eventually, running_cloud

# The gateway never pings during these tests: what the device hears is what the test sent.
QUIET_GATEWAY: dict[str, Any] = {"idle_ping_s": 600.0}


async def fake_clock_device(cloud: Cloud, **options: Any) -> tuple[VirtualDevice, FakeClock]:
    """A registered, running virtual device whose timers run on a fake clock."""
    made = await cloud.add_device(start=False)
    cloud.devices.remove(made)
    clock = FakeClock()
    chosen = dataclasses.replace(made.options, **options)
    device = VirtualDevice(made.keys, chosen, timers=Timers(clock))
    cloud.devices.append(device)
    cloud.start(device)
    return device, clock


def session_of(cloud: Cloud, device: VirtualDevice) -> DeviceSession:
    return next(s for s in cloud.node.gateway.sessions if s.device_id == device.device_id)


async def connected(cloud: Cloud, device: VirtualDevice) -> tuple[DeviceLink, DeviceSession]:
    """Online, with everything either end sent so far arrived (a signal's round trip)."""
    await eventually(lambda: device.status.connected, 10, "connected")
    await eventually(lambda: cloud.node.router.live(device.device_id) is not None, 10)
    session = session_of(cloud, device)
    await session.signal(False, 10)
    assert device.link is not None
    return device.link, session


def advance(device: VirtualDevice, clock: FakeClock, seconds: float) -> int:
    clock.now += seconds
    return device.timers.run_due()


# -- the keepalive ----------------------------------------------------------------------------


async def test_a_ping_after_idle_s_keeps_the_link_while_the_server_answers(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        device, clock = await fake_clock_device(
            cloud, heartbeat_s=None, setup_after_s=None, idle_ping_s=15.0, ping_timeout_s=10.0
        )
        link, session = await connected(cloud, device)
        heard_by_server = session.last_heard_at
        assert advance(device, clock, 14.99) == 0
        assert advance(device, clock, 0.01) == 1  # the ping
        pinged_at = clock.now
        await eventually(lambda: link.driver.last_received == pinged_at, 10, "the answer")
        assert session.last_heard_at > heard_by_server
        assert advance(device, clock, 10.0) == 1  # answered
        assert not link.ended.done()
        # The next ping is due 15 s after the answer was heard.
        assert advance(device, clock, 4.99) == 0
        assert advance(device, clock, 0.01) == 1
        assert device.link is link
        assert device.status.connected


async def test_an_unanswered_ping_ends_the_link_and_the_device_reconnects(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        device, clock = await fake_clock_device(
            cloud, heartbeat_s=None, setup_after_s=None, idle_ping_s=15.0, ping_timeout_s=10.0
        )
        link, session = await connected(cloud, device)
        session.driver.discard_reads = True  # the server hears nothing from now on
        assert advance(device, clock, 15.0) == 1
        assert advance(device, clock, 9.99) == 0
        assert not link.ended.done()
        assert advance(device, clock, 0.01) == 1
        why = link.ended.result()
        assert why is not None
        assert why.stage is Stage.KEEPALIVE_TIMEOUT
        assert why.reason == "no answer to our ping within 10 s"
        await eventually(lambda: device.status.connects == 2, 15, "reconnected")
        assert device.status.last_error is why
        assert device.link is not link


# -- the heartbeat ----------------------------------------------------------------------------


async def test_the_heartbeat_goes_out_at_once_then_every_heartbeat_s(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        beats: list[CloudEvent] = []
        cloud.node.router.add_listener(lambda e: beats.append(e) if e.name == "heartbeat" else None)
        device, clock = await fake_clock_device(
            cloud, heartbeat_s=30.0, setup_after_s=None, idle_ping_s=1000.0
        )
        await connected(cloud, device)
        await eventually(lambda: len(beats) == 1, 10, "the first heartbeat")
        assert advance(device, clock, 29.99) == 0
        assert advance(device, clock, 0.01) == 1
        await eventually(lambda: len(beats) == 2, 10, "the second heartbeat")
        for beat in beats:
            assert beat.device_id == device.device_id
            assert (beat.ttl, beat.public) == (60, False)
            assert beat.data is not None
            assert isinstance(json.loads(beat.data)["uptime"], int)


async def test_no_heartbeat_when_it_is_off(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        names: list[str] = []
        cloud.node.router.add_listener(lambda e: names.append(e.name))
        device, clock = await fake_clock_device(
            cloud, heartbeat_s=None, setup_after_s=None, idle_ping_s=1000.0
        )
        await connected(cloud, device)
        assert advance(device, clock, 999.0) == 0
        device.publish("test/marker", "x")
        # One connection keeps its order: a heartbeat sent before would be in by now.
        await eventually(lambda: "test/marker" in names, 10, "the marker")
        assert "heartbeat" not in names


# -- timers and the end of a link -------------------------------------------------------------


async def test_after_runs_its_callback_unless_the_link_ended_first(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        device, clock = await fake_clock_device(
            cloud, heartbeat_s=None, setup_after_s=None, idle_ping_s=1000.0
        )
        link, _ = await connected(cloud, device)
        ran: list[str] = []
        link.after(5.0, lambda: ran.append("first"))
        assert advance(device, clock, 4.99) == 0
        assert advance(device, clock, 0.01) == 1
        assert ran == ["first"]

        link.after(5.0, lambda: ran.append("second"))
        link.end(ProtocolError(Stage.SESSION, "test: the first reason"))
        link.end(ProtocolError(Stage.SESSION, "test: a later reason"))
        link.after(1.0, lambda: ran.append("third"))  # none start after the end
        assert advance(device, clock, 10.0) == 0
        assert ran == ["first"]
        why = link.ended.result()
        assert why is not None
        assert why.reason == "test: the first reason"
        assert link.driver.closing


async def test_a_bad_frame_from_the_server_ends_the_link_with_the_cores_error(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        device = await cloud.add_device(heartbeat_s=3600)
        link, session = await connected(cloud, device)
        assert session.driver.transport is not None
        session.driver.transport.write(b"\x00\x07" + bytes(7))  # not a multiple of 16
        why = await asyncio.wait_for(link.ended, 10)
        assert why is not None
        assert why.stage is Stage.SESSION
        assert "not a positive multiple of 16" in why.reason
        await eventually(lambda: device.status.last_error is why, 10, "the error noted")


async def test_the_server_closing_ends_the_link_and_notes_when(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        device = await cloud.add_device(heartbeat_s=3600)
        link, session = await connected(cloud, device)
        assert "closed" not in device.status.times
        session.close("test: closed by the server")
        why = await asyncio.wait_for(link.ended, 10)
        assert why is not None
        assert (why.stage, why.reason) == (Stage.SESSION, "the server closed the connection")
        assert device.status.times["closed"] >= device.status.times["hello"]
        await eventually(lambda: not device.status.connected, 10, "disconnected")


# -- the socket -------------------------------------------------------------------------------


async def test_nagle_and_separate_writes_follow_the_options(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, **QUIET_GATEWAY) as cloud:
        like_a_photon = await cloud.add_device(heartbeat_s=3600)
        tuned = await cloud.add_device(heartbeat_s=3600, nagle=False, coalesce_replies=True)
        for device, nagle, apart in ((like_a_photon, True, True), (tuned, False, False)):
            link, _ = await connected(cloud, device)
            assert link.driver.transport is not None
            sock = link.driver.transport.get_extra_info("socket")
            no_delay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert (no_delay == 0) is nagle
            assert link.driver.ack_apart is apart
            # Either way it answers as it should.
            reply = await cloud.node.router.call_function(device.device_id, "digitalread", "D1")
            assert reply == 0
