"""Frames crafted to hurt, sent inside real sessions on a live gateway: each is answered or
closes its own connection, and the other devices stay connected and answer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cyan.bus.events import CloudEvent
from cyan.keydir import KeyStore
from cyan.protocol import crypto, messages
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType, OptionNumber
from cyan.protocol.events import EventDelivered, PingAcknowledged
from cyan.protocol.messages import EventInfo
from tests.system import Cloud, RawDevice, eventually, running_cloud


@pytest.fixture
async def cloud(tmp_path: Path) -> Cloud:  # type: ignore[misc]
    async with running_cloud(tmp_path, handshake_timeout_s=5.0) as started:
        yield started


async def session(cloud: Cloud, directory: Path) -> tuple[RawDevice, KeyStore]:
    """A raw device through the handshake, registered to the admin, its Hello answered."""
    keystore = KeyStore.create(
        directory, cloud.node.gateway.server_key.public_key(), host="127.0.0.1", port=None
    )
    admin = await cloud.node.store.users.ensure("admin")
    await cloud.node.store.devices.add(
        keystore.device_id,
        crypto.public_key_der(keystore.device_key.public_key()),
        owner_id=admin.id,
    )
    raw = await RawDevice.open(cloud.device_port)
    await raw.handshake(keystore)
    await eventually(lambda: cloud.node.router.live(keystore.device_id) is not None, 10, "online")
    return raw, keystore


def event_frame(message_id: int, name: str, *options: tuple[int, bytes]) -> CoapMessage:
    return CoapMessage(
        CoapType.CON,
        CoapCode.POST,
        message_id,
        b"",
        ((OptionNumber.URI_PATH, b"e"), (OptionNumber.URI_PATH, name.encode()), *options),
        b"data",
    )


def published(cloud: Cloud, prefix: str) -> list[CloudEvent]:
    seen: list[CloudEvent] = []
    cloud.node.router.add_listener(lambda e: seen.append(e) if e.name.startswith(prefix) else None)
    return seen


async def test_a_retransmitted_event_is_acknowledged_each_time_and_published_once(
    cloud: Cloud, tmp_path: Path
) -> None:
    raw, _ = await session(cloud, tmp_path / "raw")
    seen = published(cloud, "again")
    assert raw.connection is not None
    acks_before = sum(isinstance(e, PingAcknowledged) for e in raw.events)
    for _ in range(10):
        raw.connection.send(event_frame(0x1234, "again"))
    raw.connection.send(event_frame(0x1235, "again/next"))
    while sum(isinstance(e, PingAcknowledged) for e in raw.events) - acks_before < 11:
        await raw.pump()
    assert [e.name for e in seen] == ["again", "again/next"]


async def test_an_event_with_the_largest_max_age_reaches_the_other_subscribers(
    cloud: Cloud, tmp_path: Path
) -> None:
    sender, _ = await session(cloud, tmp_path / "sender")
    listener, listener_keys = await session(cloud, tmp_path / "listener")
    assert sender.connection is not None
    assert listener.connection is not None
    listener.connection.subscribe("ttl", my_devices=True)
    listener.flush()
    router = cloud.node.router
    await eventually(lambda: "ttl" in router.subscriptions(listener_keys.device_id), 10, "on")
    max_age = (OptionNumber.MAX_AGE, b"\xff\xff\xff\xff")
    sender.connection.send(event_frame(7, "ttl/huge", max_age))
    sender.connection.publish(EventInfo("ttl/after", b"x", 60, False), confirmable=True)
    sender.flush()

    def delivered() -> list[str]:
        return [e.event.name for e in listener.events if isinstance(e, EventDelivered)]

    while len(delivered()) < 2:
        await listener.pump(10)
    assert delivered() == ["ttl/huge", "ttl/after"]


async def test_a_chunk_size_report_of_thousands_of_digits_is_ignored(
    cloud: Cloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    raw, keystore = await session(cloud, tmp_path / "raw")
    assert raw.connection is not None
    raw.connection.publish(
        EventInfo("spark/hardware/ota_chunk_size", b"9" * 5000, 60, False), confirmable=True
    )
    acks = sum(isinstance(e, PingAcknowledged) for e in raw.events)
    while sum(isinstance(e, PingAcknowledged) for e in raw.events) == acks:
        await raw.pump()
    live = cloud.node.router.live(keystore.device_id)
    assert live is not None
    assert live.ota_chunk_bytes is None
    assert not [r for r in caplog.records if r.exc_info]


# -- generated frames ------------------------------------------------------------------------

# First path segments the server knows (protocol.md §4), and some it does not.
PATHS = [b"e", b"E", b"f", b"v", b"h", b"d", b"t", b"u", b"c", b"s", b"x", b"", b"\xff" * 3]
OPTION_NUMBERS = [
    OptionNumber.URI_PATH,
    OptionNumber.URI_QUERY,
    OptionNumber.MAX_AGE,
    *range(0, 70, 7),
    269,
    65000,
]
FIRST_GENERATED_ID = 0x8000  # the pings between batches use ids below this


def coap_messages() -> st.SearchStrategy[CoapMessage]:
    option = st.tuples(
        st.sampled_from(OPTION_NUMBERS), st.binary(max_size=40) | st.sampled_from([b"9" * 5000])
    )
    segment = st.sampled_from(PATHS) | st.text(max_size=70).map(str.encode)
    path = st.tuples(st.sampled_from(PATHS), st.lists(segment, max_size=2)).map(
        lambda p: [(int(OptionNumber.URI_PATH), value) for value in (p[0], *p[1])]
    )
    return st.builds(
        lambda kind, code, mid, token, head, rest, payload: CoapMessage(
            kind, code, mid, token, tuple(sorted((*head, *rest), key=lambda o: o[0])), payload
        ),
        st.sampled_from(CoapType),
        st.sampled_from(CoapCode) | st.integers(0, 255),
        st.integers(FIRST_GENERATED_ID, 0xFFFF),
        st.binary(max_size=8),
        path,
        st.lists(option, max_size=5),
        st.binary(max_size=700) | st.sampled_from([b"", b"0", b"9" * 5000]),
    )


def event_messages() -> st.SearchStrategy[CoapMessage]:
    """Events as a device publishes them, with names, Max-Age and data of any size."""
    max_age = st.binary(max_size=9).map(lambda v: ((int(OptionNumber.MAX_AGE), v),))
    return st.builds(
        lambda kind, mid, public, name, ttl, payload: CoapMessage(
            kind,
            CoapCode.POST,
            mid,
            b"",
            ((OptionNumber.URI_PATH, public), (OptionNumber.URI_PATH, name), *ttl),
            payload,
        ),
        st.sampled_from([CoapType.CON, CoapType.NON]),
        st.integers(FIRST_GENERATED_ID, 0xFFFF),
        st.sampled_from([b"e", b"E"]),
        st.text(min_size=1, max_size=300).map(str.encode) | st.binary(min_size=1, max_size=70),
        st.just(()) | max_age,
        st.binary(max_size=1000),
    )


def generated_frames(count: int) -> list[CoapMessage]:
    """``count`` messages drawn by Hypothesis (fixed seed: a failure reproduces)."""
    drawn: list[CoapMessage] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(coap_messages() | event_messages())
    def draw(message: CoapMessage) -> None:
        drawn.append(message)

    draw()
    return drawn


async def answers_ping(raw: RawDevice, message_id: int) -> bool:
    """True once the server acknowledges a ping sent after everything else; False if it
    closed the connection first (a frame it refused, which is its right)."""
    assert raw.connection is not None
    acks = sum(isinstance(e, PingAcknowledged) for e in raw.events)
    raw.connection.send(messages.ping(message_id))
    try:
        while sum(isinstance(e, PingAcknowledged) for e in raw.events) == acks:
            await raw.pump(10)
    except ConnectionError:
        return False
    return True


async def test_generated_frames_inside_sessions_never_escape_and_others_keep_answering(
    cloud: Cloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    good = await cloud.add_device()
    await cloud.online(good)
    # Takes every event the fuzzing device publishes, so that delivery is exercised too.
    listener, listener_keys = await session(cloud, tmp_path / "listener")
    assert listener.connection is not None
    listener.connection.subscribe("", my_devices=True)
    listener.flush()
    router = cloud.node.router
    await eventually(lambda: "" in router.subscriptions(listener_keys.device_id), 10, "on")
    frames = generated_frames(400)
    raw, _ = await session(cloud, tmp_path / "fuzz")
    sessions, batch = 1, 5
    for start in range(0, len(frames), batch):
        assert raw.connection is not None
        for message in frames[start : start + batch]:
            raw.connection.send(message)
        if not await answers_ping(raw, 1 + start // batch):
            raw.close()
            sessions += 1
            raw, _ = await session(cloud, tmp_path / f"fuzz-{sessions}")
    escaped = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not escaped, [r.getMessage() for r in escaped]
    call = await cloud.http.post(f"/v1/devices/{good.device_id}/digitalread", json={"args": "D7"})
    assert call.status_code == 200, call.text
    assert good.status.connected
    assert await answers_ping(listener, 1)
    assert any(isinstance(e, EventDelivered) for e in listener.events)  # delivery was tried
