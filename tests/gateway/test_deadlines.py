"""gateway/deadlines.py: a session's handshake deadline, keepalive and describes asked again.

Real connections on loopback, with the sessions' timers on a fake clock (the rig in
test_server.py): a deadline falls due when the test moves the clock, never by itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from cyan.gateway.deadlines import DESCRIBE_AGAIN_FACTORS
from cyan.protocol import handshake, messages
from cyan.protocol.events import DescribeRequested
from tests.gateway.test_server import OLD_HELLO, Rig, gateway_rig, settle
from tests.system import RawDevice, eventually

HANDSHAKE_S = 7.0
IDLE_S = 9.0
PING_TIMEOUT_S = 4.0
# Each test moves the clock for one deadline; the others stay far off.
FAR: dict[str, Any] = {
    "handshake_timeout_s": 1000.0,
    "idle_ping_s": 1000.0,
    "describe_again_s": 1000.0,
}
KEEPALIVE: dict[str, Any] = FAR | {"idle_ping_s": IDLE_S, "ping_timeout_s": PING_TIMEOUT_S}


def failures(rig: Rig, stage: str) -> list[str]:
    return [f.reason for f in rig.gateway.failures if f.stage == stage]


async def describes(raw: RawDevice) -> list[int]:
    """The flags of every describe asked so far: a ping's answer comes after all of them."""
    await settle(raw)
    found = [e.flags for e in raw.events if isinstance(e, DescribeRequested)]
    raw.events[:] = [e for e in raw.events if not isinstance(e, DescribeRequested)]
    return found


# -- the handshake deadline -------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_fails_at_the_handshake_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cyan.gateway")
    async with gateway_rig(tmp_path, handshake_timeout_s=HANDSHAKE_S) as rig:
        raw = await RawDevice.open(rig.port)
        await raw.read_exactly(40)
        assert rig.advance(HANDSHAKE_S - 0.01) == 0
        assert rig.gateway.sessions
        assert rig.advance(0.01) == 1
        assert await raw.closed_by_server()
        assert failures(rig, "timeout") == [
            "handshake not finished within 7 s (stalled waiting in nonce-sent)"
        ]
        logged = [r.getMessage() for r in caplog.records]
        lines = [line for line in logged if "failed at stage timeout" in line]
        assert len(lines) == 1
        assert lines[0].startswith("connection from 127.0.0.1 failed at stage timeout: ")
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")


async def test_a_device_that_never_sends_its_hello_fails_at_the_handshake_limit(
    tmp_path: Path,
) -> None:
    async with gateway_rig(tmp_path, handshake_timeout_s=HANDSHAKE_S) as rig:
        keystore = await rig.keystore()
        raw = await RawDevice.open(rig.port)
        nonce = await raw.read_exactly(40)
        # The key exchange by hand, without the Hello that DeviceConnection would send.
        device = handshake.DeviceHandshake(
            keystore.device_id, keystore.device_key, keystore.server.public_key
        )
        raw.write(device.identify(nonce))
        (session,) = rig.gateway.sessions
        await eventually(lambda: session.connection.established, 10, "the session key sent")
        assert rig.advance(HANDSHAKE_S) == 1
        assert await raw.closed_by_server()
        (failure,) = rig.gateway.failures
        assert failure.stage == "timeout"
        assert failure.device_id == keystore.device_id
        assert failure.reason == (
            "handshake not finished within 7 s (stalled waiting in the device's Hello)"
        )


async def test_a_device_online_in_time_outlives_the_handshake_deadline(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, **(FAR | {"handshake_timeout_s": HANDSHAKE_S})) as rig:
        raw, session = await rig.online()
        assert rig.advance(HANDSHAKE_S) == 1  # it fires, and finds the device online
        assert session.is_online
        assert list(rig.gateway.failures) == []
        raw.close()


# -- the keepalive ----------------------------------------------------------------------------


async def test_a_quiet_device_is_pinged_and_kept_while_it_answers(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, **KEEPALIVE) as rig:
        raw, session = await rig.online()
        heard = session.driver.last_received
        assert rig.advance(IDLE_S - 0.01) == 0
        assert rig.advance(0.01) == 1  # the ping goes out
        pinged_at = rig.clock.now
        # The device's core answers the ping by itself (an empty ACK).
        await eventually(lambda: session.driver.last_received == pinged_at, 10, "the answer")
        assert session.driver.last_received > heard
        assert session.pings_answered == 0
        assert rig.advance(PING_TIMEOUT_S) == 1
        assert session.pings_answered == 1
        assert session.is_online
        assert failures(rig, "keepalive-timeout") == []
        raw.close()


async def test_a_device_that_stops_answering_is_dropped(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, **KEEPALIVE) as rig:
        raw, session = await rig.online()
        raw.stop_answering()
        assert rig.advance(IDLE_S) == 1
        assert rig.advance(PING_TIMEOUT_S - 0.01) == 0
        assert session.is_online
        assert rig.advance(0.01) == 1
        assert not session.is_online
        assert failures(rig, "keepalive-timeout") == [
            "no answer to our ping within 4 s after 9 s of silence"
        ]
        assert await raw.closed_by_server()
        device_id = session.live.device_id
        await eventually(lambda: rig.router.live(device_id) is None, 10, "offline")
        assert session.pings_answered == 0


async def test_anything_the_device_says_puts_the_ping_off(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, **KEEPALIVE) as rig:
        raw, session = await rig.online()
        assert raw.connection is not None
        assert rig.advance(IDLE_S / 2) == 0
        raw.connection.publish(messages.EventInfo("test/chatter", b"x", 60, public=False))
        raw.flush()
        spoke_at = rig.clock.now
        await eventually(lambda: session.driver.last_received == spoke_at, 10, "the event")
        raw.stop_answering()
        # Due IDLE_S after the connect, it looks again IDLE_S after the event: no ping yet
        # (one would have gone unanswered for longer than PING_TIMEOUT_S by then).
        assert rig.advance(IDLE_S / 2) == 1
        assert rig.advance(IDLE_S / 2 - 0.01) == 0
        assert IDLE_S / 2 > PING_TIMEOUT_S
        assert session.is_online
        assert rig.advance(0.01) == 1  # now the ping
        assert rig.advance(PING_TIMEOUT_S) == 1
        assert failures(rig, "keepalive-timeout")


# -- describes asked again --------------------------------------------------------------------


async def test_a_device_that_never_describes_itself_is_asked_at_1_5_and_30_times(
    tmp_path: Path,
) -> None:
    assert DESCRIBE_AGAIN_FACTORS == (1, 5, 30)
    step = 2.0
    async with gateway_rig(tmp_path, **(FAR | {"describe_again_s": step})) as rig:
        raw, _ = await rig.online(hello=OLD_HELLO)
        both = messages.DescribeFlags.APPLICATION | messages.DescribeFlags.SYSTEM
        application = messages.DescribeFlags.APPLICATION
        # Asked at once for both parts (the system part names the release) ...
        assert await describes(raw) == [both]
        assert rig.advance(step - 0.01) == 0
        # ... then for the application part at 1×, 5× and 30× describe_again_s.
        assert rig.advance(0.01) == 1
        assert await describes(raw) == [application]
        assert rig.advance(4 * step - 0.01) == 0
        assert rig.advance(0.01) == 1
        assert await describes(raw) == [application]
        assert rig.advance(25 * step) == 1
        assert await describes(raw) == [application]
        assert rig.advance(100 * step) == 0
        assert await describes(raw) == []
        raw.close()


async def test_a_device_that_describes_itself_is_asked_once(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, **(FAR | {"describe_again_s": 2.0})) as rig:
        raw, _ = await rig.online()  # Hello flag 0x20
        assert await describes(raw) == [messages.DescribeFlags.APPLICATION]
        assert rig.advance(100.0) == 0
        assert await describes(raw) == []
        raw.close()


# -- the end of a connection ------------------------------------------------------------------


async def test_no_deadline_fires_after_the_connection_ends(tmp_path: Path) -> None:
    async with gateway_rig(
        tmp_path, handshake_timeout_s=HANDSHAKE_S, idle_ping_s=IDLE_S, describe_again_s=1.0
    ) as rig:
        raw, session = await rig.online(hello=OLD_HELLO)
        raw.close()
        await eventually(lambda: not rig.gateway.sessions, 10, "closed")
        assert rig.advance(1000.0) == 0
        assert failures(rig, "keepalive-timeout") == []
        assert failures(rig, "timeout") == []
        assert list(rig.gateway.failures) == []  # closed after its Hello: no failure at all
        assert not session.is_online
