"""gateway/session.py: one DeviceSession, driven from the device end by hand (RawDevice).

The real Gateway and store on loopback (the rig in test_server.py); what the device
answers is written by each test, so every request and its answer are in plain sight.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from cyan.bus.events import CloudEvent
from cyan.cloud.errors import DeviceOffline, DeviceTimedOut
from cyan.gateway.admission import FLOOD_DROPS
from cyan.protocol import ProtocolError, Stage, messages, ota, payloads
from cyan.protocol.connection import FRAMES_PER_STEP
from cyan.protocol.events import (
    DescribeRequested,
    EventDelivered,
    FunctionCallRequested,
    SignalRequested,
    VariableRequested,
)
from cyan.store import StoreUnavailable
from tests.gateway.test_server import NEW_HELLO, gateway_rig, next_event, settle
from tests.system import RawDevice, eventually


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "failed at stage" in r.getMessage()]


# -- connecting -------------------------------------------------------------------------------


async def test_a_connection_is_a_session_with_its_nonce_sent_at_once(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw = await RawDevice.open(rig.port)
        assert len(await raw.read_exactly(40)) == 40
        (session,) = rig.gateway.sessions
        assert session.remote_ip == "127.0.0.1"
        assert session.device_id is None
        assert not session.is_online
        raw.close()


async def test_online_from_the_hello_with_what_the_hello_said(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        owner = await rig.store.users.ensure("ada")
        keystore = await rig.keystore(owner_id=owner.id)
        raw, session = await rig.online(keystore, hello=messages.HelloInfo(12, 34, 0x20, 6))
        assert session.is_online
        assert (session.device_id, session.owner_id) == (keystore.device_id, owner.id)
        live = session.live
        assert live.device_id == keystore.device_id
        assert live.remote_ip == "127.0.0.1"
        assert (live.product_id, live.product_firmware_version, live.platform_id) == (12, 34, 6)
        assert live.self_describes
        assert rig.router.live(keystore.device_id) is not None
        raw.close()


async def test_live_is_a_snapshot_and_last_heard_follows_each_frame(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        before = session.live
        assert raw.connection is not None
        raw.connection.publish(messages.EventInfo("test/tick", b"1", 60, public=False))
        raw.flush()
        await eventually(lambda: session.live.last_heard > before.last_heard, 10, "the frame")
        assert session.live.connected_at == before.connected_at
        assert before.last_heard < session.live.last_heard  # the old snapshot kept its value
        raw.close()


# -- closing and failures ---------------------------------------------------------------------


async def test_a_device_that_closes_after_its_hello_is_no_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Device OS closes its socket before a reset or on Particle.disconnect(): one line
    at INFO, no failure kept or stored."""
    caplog.set_level(logging.INFO, "cyan.gateway")
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        device_id = session.live.device_id
        raw.close()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")
        assert rig.router.live(device_id) is None
        assert list(rig.gateway.failures) == []
        assert failure_lines(caplog) == []
        closed = [r for r in caplog.records if r.getMessage().endswith("closed the connection")]
        assert [(r.levelno, r.getMessage()) for r in closed] == [
            (logging.INFO, f"device {device_id} closed the connection")
        ]


async def test_a_device_that_closes_mid_frame_is_one_failure_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cyan.gateway")
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        device_id = session.live.device_id
        raw.write(b"\x00\x20" + b"\x01" * 5)  # 7 of the 34 bytes its length says
        raw.close()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")
        (failure,) = rig.gateway.failures
        assert (failure.stage, failure.device_id) == ("session", device_id)
        assert failure.reason == "the device closed the connection in the middle of a frame"
        (line,) = failure_lines(caplog)
        assert line.startswith(f"device {device_id} from 127.0.0.1 failed at stage session: ")


async def test_a_reset_connection_is_logged_as_lost(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, _ = await rig.online()
        raw.reset()
        await eventually(lambda: bool(rig.gateway.failures), 10, "the failure")
        (failure,) = rig.gateway.failures
        assert failure.stage == "session"
        assert failure.reason.startswith("connection lost: ")


async def test_a_reset_session_is_offline_at_once(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        raw.reset()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")
        assert not session.is_online
        with pytest.raises(DeviceOffline):
            await session.call_function("brew", "", 0.5)


async def test_fail_closes_the_connection_and_only_the_first_reason_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cyan.gateway")
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        session.fail(ProtocolError(Stage.SESSION, "test: the first reason"))
        session.fail(ProtocolError(Stage.SESSION, "test: a second reason"))
        assert await raw.closed_by_server()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")
        (failure,) = rig.gateway.failures
        assert failure.reason == "test: the first reason"
        assert failure.device_id == session.device_id  # filled in from the session
        assert len(failure_lines(caplog)) == 1


async def test_a_close_by_the_server_is_no_failure(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        session.close("test: closed on purpose")
        assert not session.is_online
        assert await raw.closed_by_server()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")
        assert list(rig.gateway.failures) == []
        assert rig.router.live(session.live.device_id) is None


async def test_a_goodbye_makes_the_close_that_follows_no_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cyan.gateway")
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        assert raw.connection is not None
        raw.connection.goodbye()
        await settle(raw)
        assert not session.is_online
        raw.close()
        await eventually(lambda: not rig.gateway.sessions, 10, "the session gone")
        assert list(rig.gateway.failures) == []
        assert rig.router.live(session.live.device_id) is None
        assert any(r.getMessage().endswith("said goodbye") for r in caplog.records)


async def test_a_store_that_cannot_be_read_fails_the_key_lookup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_rig(tmp_path, started=False) as rig:
        keystore = await rig.keystore()
        await rig.store.close()
        raw = await RawDevice.open(rig.port)
        with pytest.raises(ConnectionError):
            await raw.handshake(keystore)
        await eventually(lambda: bool(rig.gateway.failures), 10, "the failure")
        (failure,) = rig.gateway.failures
        assert (failure.stage, failure.device_id) == ("unknown-device", keystore.device_id)
        assert failure.reason == "the device store could not be read"
        assert any(
            r.getMessage() == f"key lookup for device {keystore.device_id} failed"
            for r in caplog.records
        )
        with pytest.raises(StoreUnavailable):  # the failure cannot be written either
            await rig.stop()


# -- requests and their answers ---------------------------------------------------------------


async def test_a_call_and_a_read_wait_for_the_devices_answers(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        assert raw.connection is not None
        body = payloads.encode_description(["brew"], {"level": payloads.VARIABLE_INT})
        raw.connection.post_describe(messages.DescribeFlags.APPLICATION, body)
        await settle(raw)
        assert session.live.variables == {"level": "int32"}
        waiting = session.connection.pending_requests  # the describe asked at connect

        call = asyncio.ensure_future(session.call_function("brew", "coffee,2", 10))
        request = await next_event(raw, FunctionCallRequested)
        assert (request.name, request.argument) == ("brew", "coffee,2")
        raw.connection.reply_function(request.token, 42)
        raw.flush()
        assert await asyncio.wait_for(call, 10) == 42

        read = asyncio.ensure_future(session.get_variable("level", 10))
        asked = await next_event(raw, VariableRequested)
        assert asked.name == "level"
        raw.connection.reply_variable(asked, payloads.encode_variable(payloads.VARIABLE_INT, -7))
        raw.flush()
        assert await asyncio.wait_for(read, 10) == -7
        assert session.connection.pending_requests == waiting
        raw.close()


async def test_an_unanswered_call_times_out_and_frees_its_token(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        waiting = session.connection.pending_requests
        with pytest.raises(DeviceTimedOut):
            await session.call_function("brew", "", 0.2)
        assert (await next_event(raw, FunctionCallRequested)).name == "brew"
        assert session.connection.pending_requests == waiting
        raw.close()


async def test_a_request_fails_as_offline_when_the_connection_ends(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        call = asyncio.ensure_future(session.call_function("brew", "", 30))
        await next_event(raw, FunctionCallRequested)
        raw.close()
        with pytest.raises(DeviceOffline):
            await asyncio.wait_for(call, 10)


async def test_describe_again_returns_what_the_device_has_now(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        assert raw.connection is not None
        await next_event(raw, DescribeRequested)  # the one asked at connect, unanswered
        asking = asyncio.ensure_future(session.describe_again())
        request = await next_event(raw, DescribeRequested)
        assert request.flags == messages.DescribeFlags.APPLICATION
        body = payloads.encode_description(["late"], {"t": payloads.VARIABLE_DOUBLE})
        raw.connection.reply_describe(request, body)
        raw.flush()
        live = await asyncio.wait_for(asking, 10)
        assert (live.functions, live.variables) == (("late",), {"t": "double"})
        raw.close()


async def test_signal_reaches_the_device_and_marks_it_signaling(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        assert not session.live.signaling
        await asyncio.wait_for(session.signal(True, 10), 15)
        assert (await next_event(raw, SignalRequested)).on
        assert session.live.signaling
        await asyncio.wait_for(session.signal(False, 10), 15)
        assert not (await next_event(raw, SignalRequested)).on
        assert not session.live.signaling
        raw.close()


# -- what the device sends --------------------------------------------------------------------


async def test_published_events_go_to_the_router_with_device_and_owner(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        owner = await rig.store.users.ensure("ada")
        heard: list[CloudEvent] = []
        rig.router.add_listener(heard.append)
        raw, session = await rig.online(await rig.keystore(owner_id=owner.id))
        assert raw.connection is not None
        raw.connection.publish(messages.EventInfo("weather/rain", b"3mm", 120, public=True))
        raw.connection.publish(messages.EventInfo(ota.CHUNK_SIZE_EVENT, b"256", 60, False))
        await settle(raw)
        rain = next(e for e in heard if e.name == "weather/rain")
        assert (rain.data, rain.ttl, rain.public) == ("3mm", 120, True)
        assert (rain.device_id, rain.owner_id) == (session.device_id, owner.id)
        # The chunk size it announces is kept for its updates.
        assert session.live.ota_chunk_bytes == 256
        raw.close()


async def test_a_claim_code_event_gives_the_device_to_the_codes_user(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        ada = await rig.store.users.ensure("ada")
        code = await rig.store.claims.create(ada.id)
        raw, session = await rig.online(await rig.keystore(owner_id=None))
        assert session.owner_id is None
        assert raw.connection is not None
        event = messages.EventInfo(messages.CLAIM_CODE_EVENT, code.encode(), 60, public=False)
        raw.connection.publish(event)
        raw.flush()
        await eventually(lambda: session.owner_id == ada.id, 10, "claimed")
        record = await rig.store.devices.get(session.live.device_id)
        assert record is not None
        assert record.owner_id == ada.id
        raw.close()


async def test_a_subscription_is_kept_once_and_given_to_the_router(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        listener, session = await rig.online()
        assert listener.connection is not None
        for _ in range(2):
            listener.connection.subscribe("weather", my_devices=False)
        await settle(listener)
        assert [s.prefix for s in session.requests.subscriptions] == ["weather"]
        sender, _ = await rig.online()
        assert sender.connection is not None
        sender.connection.publish(messages.EventInfo("weather/sun", b"1", 60, public=True))
        await settle(sender)
        await settle(listener)
        delivered = [e for e in listener.events if isinstance(e, EventDelivered)]
        assert len(delivered) == 1  # one delivery, not one per subscribe
        listener.close()
        sender.close()


async def test_watch_activity_is_set_by_what_arrives_until_stopped(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        raw, session = await rig.online()
        transport = session.driver.transport
        assert transport is not None
        assert raw.connection is not None
        defaults = transport.get_write_buffer_limits()
        activity = session.watch_activity(4096)
        assert transport.get_write_buffer_limits() == (1024, 4096)
        assert not activity.is_set()
        raw.connection.publish(messages.EventInfo("test/a", b"1", 60, public=False))
        raw.flush()
        await asyncio.wait_for(activity.wait(), 10)
        session.stop_watching_activity()
        assert transport.get_write_buffer_limits() == defaults
        activity.clear()
        raw.connection.publish(messages.EventInfo("test/b", b"1", 60, public=False))
        await settle(raw)
        assert not activity.is_set()
        raw.close()


async def test_set_owner_moves_the_devices_events_to_the_new_owner(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        heard: list[CloudEvent] = []
        rig.router.add_listener(heard.append)
        raw, session = await rig.online(hello=NEW_HELLO)
        session.set_owner(77)
        assert raw.connection is not None
        raw.connection.publish(messages.EventInfo("test/owned", b"1", 60, public=False))
        await settle(raw)
        assert [e.owner_id for e in heard if e.name == "test/owned"] == [77]
        raw.close()


async def test_subscriptions_over_the_cap_are_refused_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_rig(tmp_path, max_subscriptions=3) as rig:
        flooder, session = await rig.online()
        assert flooder.connection is not None
        with caplog.at_level(logging.WARNING, logger="cyan.gateway"):
            for index in range(10):
                flooder.connection.subscribe(f"flood/{index}", my_devices=False)
            await settle(flooder)

        assert [s.prefix for s in session.requests.subscriptions] == [
            "flood/0",
            "flood/1",
            "flood/2",
        ]
        assert session.requests.refused_subscriptions == 7
        assert len([r for r in caplog.records if "refusing" in r.getMessage()]) == 1
        # The device stays connected, and what it holds still delivers.
        sender, _ = await rig.online()
        assert sender.connection is not None
        for name in ("flood/9", "flood/2/x"):
            sender.connection.publish(messages.EventInfo(name, b"1", 60, public=True))
        await settle(sender)
        await settle(flooder)
        delivered = [e.event.name for e in flooder.events if isinstance(e, EventDelivered)]
        assert delivered == ["flood/2/x"]
        flooder.close()
        sender.close()


async def test_a_device_that_keeps_subscribing_past_the_cap_is_read_a_batch_a_second(
    tmp_path: Path,
) -> None:
    """10,000 subscriptions once froze the node; refused one by one they still cost the
    loop every frame, so the flooder's socket is held (gateway/admission.py)."""
    async with gateway_rig(tmp_path, max_subscriptions=3) as rig:
        flooder, session = await rig.online()
        other, _ = await rig.online()
        assert flooder.connection is not None
        sent = 5 * FRAMES_PER_STEP
        for index in range(sent):
            flooder.connection.subscribe(f"flood/{index}", my_devices=False)
        flooder.flush()
        transport = session.driver.transport
        assert transport is not None
        await eventually(lambda: not transport.is_reading(), 10, "the flooder's socket held")
        await settle(other)  # the others are read and answered meanwhile
        # A batch each FLOOD_HOLD_S (1 s): far from all of them, however slow this machine.
        assert FLOOD_DROPS <= session.requests.refused_subscriptions < sent - 3
        assert session in rig.gateway.sessions  # held, not closed
        flooder.close()
        other.close()
