"""gateway/admission.py in a live session: a device publishing faster than about 1 event a
second (bursts of 4), or events too big for its Device OS, has them dropped and counted,
in the store, GET /v1/devices/ID and `cyan device why`; system events are never counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cyan.bus.events import CloudEvent
from cyan.diagnose.history import device_history, history_json
from cyan.gateway.admission import FLOOD_DROPS
from cyan.protocol import messages
from cyan.protocol.connection import FRAMES_PER_STEP
from cyan.protocol.limits import SMALL
from tests.gateway.test_server import gateway_rig, settle
from tests.system import eventually


def event(name: str, data: bytes = b"x") -> messages.EventInfo:
    return messages.EventInfo(name, data, 60, public=False)


async def test_a_flood_keeps_four_at_once_then_one_a_second(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path) as rig:
        heard: list[CloudEvent] = []
        rig.router.add_listener(heard.append)
        raw, session = await rig.online()
        assert raw.connection is not None
        for index in range(10):
            raw.connection.publish(event(f"flood/{index}"))
        for index in range(3):  # the cloud's own conversation: never limited
            raw.connection.publish(event(f"spark/device/note/{index}"))
        raw.flush()
        await settle(raw)
        assert [e.name for e in heard if e.name.startswith("flood/")] == [
            f"flood/{index}" for index in range(4)
        ]
        assert sum(e.name.startswith("spark/") for e in heard) == 3

        rig.clock.now += 2.0  # two more tokens
        for index in range(10, 13):
            raw.connection.publish(event(f"flood/{index}"))
        raw.flush()
        await settle(raw)
        assert [e.name for e in heard if e.name.startswith("flood/")][4:] == [
            "flood/10",
            "flood/11",
        ]

        await rig.gateway.flush()
        record = await rig.store.devices.get(session.live.device_id)
        assert record is not None
        assert (record.events_over_rate, record.events_too_big) == (7, 0)
        assert record.last_event_dropped_at is not None
        raw.close()


async def test_a_device_that_floods_is_not_read_until_its_rate_allows_an_event(
    tmp_path: Path,
) -> None:
    """Dropped one by one, a flood would still cost the loop every frame the device can
    send. One event a hundred seconds: the hold outlasts the test."""
    async with gateway_rig(tmp_path, events_per_s=0.01) as rig:
        raw, session = await rig.online()
        other, _ = await rig.online()
        assert raw.connection is not None
        sent = 5 * FRAMES_PER_STEP
        for index in range(sent):
            raw.connection.publish(event(f"flood/{index}"))
        raw.flush()
        transport = session.driver.transport
        assert transport is not None
        await eventually(lambda: not transport.is_reading(), 10, "the flooder's socket held")
        await settle(other)  # the others are read and answered meanwhile
        await rig.gateway.flush()
        record = await rig.store.devices.get(session.live.device_id)
        assert record is not None
        # The batch in hand when the gate saw FLOOD_DROPS in a row, and none after it.
        assert FLOOD_DROPS <= record.events_over_rate <= FRAMES_PER_STEP - 4 < sent - 4
        assert not transport.is_reading()
        assert session in rig.gateway.sessions  # held, not closed
        raw.close()
        other.close()


async def test_events_too_big_for_the_device_os_are_dropped_and_counted(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, events_per_s=0) as rig:
        heard: list[CloudEvent] = []
        rig.router.add_listener(heard.append)
        raw, session = await rig.online()
        limits = session.live.limits  # this Hello names a Device OS before 0.8: 255 bytes
        assert limits.event_data_bytes == SMALL.event_data_bytes
        assert raw.connection is not None
        raw.connection.publish(event("fits", b"d" * limits.event_data_bytes))
        raw.connection.publish(event("too-much-data", b"d" * (limits.event_data_bytes + 1)))
        raw.connection.publish(event("n" * 65))
        for index in range(8):  # events_per_s=0: no rate limit
            raw.connection.publish(event(f"many/{index}"))
        raw.flush()
        await settle(raw)
        assert [e.name for e in heard] == ["fits"] + [f"many/{index}" for index in range(8)]

        await rig.gateway.flush()
        device_id = session.live.device_id
        record = await rig.store.devices.get(device_id)
        assert record is not None
        assert (record.events_over_rate, record.events_too_big) == (0, 2)
        history = await device_history(
            rig.store, device_id, record, online=True, any_address=True, now=datetime.now(UTC)
        )
        shown = history_json(history)["events_dropped"]
        assert (shown["over_rate"], shown["too_big"]) == (0, 2)
        assert history.events_dropped is not None
        assert "2 too big" in history.events_dropped.sentence
        raw.close()
