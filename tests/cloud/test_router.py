"""cloud/router.py: the registry of live devices, requests to them, and events fanned out.

The router is the real one throughout. The first part stands a hand-written link in for the
gateway's session (tests/cloud/links.py); the last part runs the real gateway on loopback
(running_cloud) with a device driven by hand, for what the session decides on delivery
(scope, owner, size).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyan.bus.events import CloudEvent
from cyan.cloud import (
    BadArgument,
    DeviceOffline,
    FunctionNotFound,
    Router,
    VariableNotFound,
)
from cyan.cloud.router import SYSTEM_EVENT_PREFIXES
from cyan.cloud.types import FlashOptions, UpdateProgress
from cyan.protocol import messages
from cyan.protocol.events import EventDelivered
from cyan.protocol.limits import MEDIUM, SMALL, DeviceLimits
from cyan.protocol.transfer import UpdateState
from cyan.settings import ADMIN_USERNAME
from tests.cloud.links import DEVICE, OTHER, THIRD, FakeLink, live_device, progress
from tests.system import Cloud, RawDevice, eventually, running_cloud

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def event(
    name: str,
    *,
    device_id: str | None = None,
    owner_id: int | None = 1,
    public: bool = False,
    data: str | None = "x",
) -> CloudEvent:
    return CloudEvent(
        name=name,
        data=data,
        ttl=60,
        public=public,
        published_at=NOW,
        device_id=device_id,
        owner_id=owner_id,
    )


def names(link: FakeLink) -> list[str]:
    return [e.name for e in link.delivered]


@pytest.fixture
def router() -> Router:
    return Router(function_timeout_s=7.0, variable_timeout_s=9.0)


@pytest.fixture
def link(router: Router) -> FakeLink:
    attached = FakeLink(live_device(DEVICE))
    assert router.attach(DEVICE, attached) is None
    return attached


# -- presence ---------------------------------------------------------------------------------


def test_a_device_never_attached_is_not_live(router: Router) -> None:
    assert router.live(DEVICE) is None
    assert router.online_ids() == []


def test_an_attached_device_is_live_with_what_its_link_knows(
    router: Router, link: FakeLink
) -> None:
    assert router.live(DEVICE) is link.live
    assert router.online_ids() == [DEVICE]
    # What the link learns later is what the router answers (it keeps no copy).
    link.live = replace(link.live, functions=("led", "fan"))
    live = router.live(DEVICE)
    assert live is not None
    assert live.functions == ("led", "fan")


def test_a_new_connection_replaces_the_old_one_and_hands_it_back(
    router: Router, link: FakeLink
) -> None:
    newer = FakeLink(live_device(DEVICE, functions=("newer",)))
    assert router.attach(DEVICE, newer) is link  # the caller closes it
    assert router.live(DEVICE) is newer.live
    assert router.online_ids() == [DEVICE]
    # The old connection ending later must not take the new one offline.
    assert router.detach(DEVICE, link) is False
    assert router.live(DEVICE) is newer.live
    assert router.detach(DEVICE, newer) is True
    assert router.live(DEVICE) is None
    assert router.detach(DEVICE, newer) is False


def test_attaching_the_same_link_again_replaces_nothing(router: Router, link: FakeLink) -> None:
    router.subscribe(DEVICE, "weather")
    assert router.attach(DEVICE, link) is None
    router.publish(event("weather/rain", device_id=OTHER))
    assert names(link) == ["weather/rain"]  # its subscriptions stay


def test_devices_are_kept_apart(router: Router, link: FakeLink) -> None:
    other = FakeLink(live_device(OTHER))
    assert router.attach(OTHER, other) is None
    assert sorted(router.online_ids()) == sorted([DEVICE, OTHER])
    assert router.detach(OTHER, link) is False  # another device's link
    assert router.detach(OTHER, other) is True
    assert router.online_ids() == [DEVICE]


def test_a_replacing_connection_starts_without_the_old_ones_subscriptions(
    router: Router, link: FakeLink
) -> None:
    router.subscribe(DEVICE, "weather")
    newer = FakeLink(live_device(DEVICE))
    router.attach(DEVICE, newer)
    router.publish(event("weather/rain", device_id=OTHER))
    assert link.delivered == newer.delivered == []
    router.subscribe(DEVICE, "weather")  # the new connection subscribes anew
    router.publish(event("weather/snow", device_id=OTHER))
    assert names(newer) == ["weather/snow"]
    assert link.delivered == []


def test_a_detached_device_loses_its_subscriptions(router: Router, link: FakeLink) -> None:
    router.subscribe(DEVICE, "weather")
    assert router.detach(DEVICE, link)
    back = FakeLink(live_device(DEVICE))
    router.attach(DEVICE, back)
    router.publish(event("weather/rain", device_id=OTHER))
    assert back.delivered == link.delivered == []


# -- requests to a device that is not there ----------------------------------------------------


async def test_every_request_to_an_unknown_device_is_device_offline(router: Router) -> None:
    def report(progress: UpdateProgress) -> None:
        raise AssertionError("no progress from a device that is not there")

    requests = [
        router.call_function(DEVICE, "led", "on"),
        router.get_variable(DEVICE, "temp"),
        router.describe_again(DEVICE),
        router.signal(DEVICE, True),
        router.flash(DEVICE, b"bin", FlashOptions(), report),
    ]
    for request in requests:
        with pytest.raises(DeviceOffline) as raised:
            await request
        assert raised.value.message == "Device is offline"
        assert raised.value.fix == "Check that the device is breathing cyan."
        assert raised.value.http_status == 404


async def test_a_device_that_went_away_is_offline_and_its_link_is_not_asked(
    router: Router, link: FakeLink
) -> None:
    router.detach(DEVICE, link)
    with pytest.raises(DeviceOffline):
        await router.call_function(DEVICE, "led", "on")
    with pytest.raises(DeviceOffline):
        await router.get_variable(DEVICE, "temp")
    assert link.calls == []
    assert link.reads == []
    assert link.describes == 0


# -- function calls -------------------------------------------------------------------------------


async def test_a_known_function_is_called_with_the_routers_timeout(
    router: Router, link: FakeLink
) -> None:
    link.function_result = 42
    assert await router.call_function(DEVICE, "led", "on") == 42
    assert link.calls == [("led", "on", 7.0)]
    assert link.describes == 0  # the describe had it: nothing asked again


async def test_a_function_registered_since_the_describe_is_found_by_asking_again(
    router: Router, link: FakeLink
) -> None:
    link.described_later = live_device(DEVICE, functions=("led", "late"))
    assert await router.call_function(DEVICE, "late", "") == 1
    assert link.describes == 1
    assert link.calls == [("late", "", 7.0)]


async def test_an_unknown_function_is_not_found_and_never_sent(
    router: Router, link: FakeLink
) -> None:
    with pytest.raises(FunctionNotFound, match=r"^Function nope not found$") as raised:
        await router.call_function(DEVICE, "nope", "")
    assert raised.value.http_status == 404
    assert link.describes == 1  # asked once more before the 404
    assert link.calls == []


@pytest.mark.parametrize(
    ("limits", "argument"),
    [
        (SMALL, "a" * 64),
        (MEDIUM, "a" * 623),
        # Bytes, not characters: 32 two-byte characters are 64 bytes.
        (SMALL, "é" * 32),
    ],
)
async def test_an_argument_over_the_devices_limit_is_refused_before_anything(
    router: Router, limits: DeviceLimits, argument: str
) -> None:
    link = FakeLink(live_device(DEVICE, limits=limits))
    router.attach(DEVICE, link)
    size = len(argument.encode())
    with pytest.raises(BadArgument) as raised:
        await router.call_function(DEVICE, "nope", argument)
    assert raised.value.message == (
        f"Function argument is {size} bytes; this device ({link.live.limits.basis}) takes "
        f"at most {link.live.limits.function_argument_bytes}"
    )
    assert raised.value.http_status == 400
    assert link.calls == []
    assert link.describes == 0  # refused before the name was even looked up


async def test_an_argument_exactly_at_the_limit_is_sent(router: Router) -> None:
    link = FakeLink(live_device(DEVICE, limits=SMALL))
    router.attach(DEVICE, link)
    await router.call_function(DEVICE, "led", "a" * SMALL.function_argument_bytes)
    assert [call[1] for call in link.calls] == ["a" * 63]


async def test_a_name_too_long_for_an_old_release_is_refused_with_the_cut_name(
    router: Router,
) -> None:
    link = FakeLink(live_device(DEVICE, limits=SMALL, functions=("temperature_",)))
    router.attach(DEVICE, link)
    with pytest.raises(BadArgument) as raised:
        await router.call_function(DEVICE, "temperature_sensor", "")
    assert raised.value.message == (
        "Function name is 18 bytes; this device (Device OS older than 0.8) takes names of "
        "at most 12; it lists longer names cut short: try temperature_"
    )
    assert link.calls == []
    assert link.describes == 0


async def test_a_name_too_long_for_a_newer_release_has_no_hint(
    router: Router, link: FakeLink
) -> None:
    name = "n" * 65
    with pytest.raises(BadArgument) as raised:
        await router.call_function(DEVICE, name, "")
    assert raised.value.message == (
        "Function name is 65 bytes; this device (Device OS 0.8 to 2.x) takes names of at most 64"
    )
    with pytest.raises(BadArgument, match=r"^Variable name is 65 bytes;"):
        await router.get_variable(DEVICE, name)
    assert link.calls == []
    assert link.reads == []


async def test_the_cut_name_hint_never_splits_a_character(router: Router) -> None:
    link = FakeLink(live_device(DEVICE, limits=SMALL))
    router.attach(DEVICE, link)
    # 7 two-byte characters: 14 bytes; 12 bytes hold 6 of them.
    with pytest.raises(BadArgument, match=r"try éééééé$"):
        await router.call_function(DEVICE, "é" * 7, "")
    # 13 bytes where the 12-byte cut falls inside the last character.
    with pytest.raises(BadArgument, match=r"try aééééé$"):
        await router.get_variable(DEVICE, "a" + "é" * 6)


# -- variables, signal, describe, flash ---------------------------------------------------------


async def test_a_known_variable_is_read_with_the_routers_timeout(
    router: Router, link: FakeLink
) -> None:
    link.variable_value = "hello"
    assert await router.get_variable(DEVICE, "temp") == "hello"
    assert link.reads == [("temp", 9.0)]
    assert link.describes == 0


async def test_a_variable_registered_since_the_describe_is_read(
    router: Router, link: FakeLink
) -> None:
    link.described_later = live_device(DEVICE, variables={"temp": "double", "late": "int32"})
    assert await router.get_variable(DEVICE, "late") == 21.5
    assert link.describes == 1
    assert link.reads == [("late", 9.0)]


async def test_an_unknown_variable_is_not_found_and_never_read(
    router: Router, link: FakeLink
) -> None:
    with pytest.raises(VariableNotFound, match=r"^Variable not found$") as raised:
        await router.get_variable(DEVICE, "nope")
    assert raised.value.http_status == 404
    assert link.describes == 1
    assert link.reads == []


async def test_signal_describe_and_flash_go_to_the_devices_link(
    router: Router, link: FakeLink
) -> None:
    await router.signal(DEVICE, True)
    await router.signal(DEVICE, False)
    assert link.signals == [(True, 7.0), (False, 7.0)]

    link.described_later = live_device(DEVICE, functions=("fresh",))
    assert await router.describe_again(DEVICE) is link.described_later

    seen: list[UpdateProgress] = []
    options = FlashOptions(chunk_bytes=256, offer_fast=False, deadline_s=1.0)
    link.reports = [progress(UpdateState.SUCCEEDED, 6, 6)]
    link.release.set()
    await router.flash(DEVICE, b"binary", options, seen.append)
    assert link.flashes == [(b"binary", options)]
    assert seen == link.reports


# -- events -------------------------------------------------------------------------------------


def test_listeners_hear_every_event_in_order(router: Router, link: FakeLink) -> None:
    heard: list[tuple[str, str]] = []
    router.add_listener(lambda e: heard.append(("first", e.name)))
    router.add_listener(lambda e: heard.append(("second", e.name)))
    router.publish(event("nobody/subscribed"))
    router.publish(event("spark/device/diagnostics", device_id=DEVICE))
    assert heard == [
        ("first", "nobody/subscribed"),
        ("second", "nobody/subscribed"),
        ("first", "spark/device/diagnostics"),
        ("second", "spark/device/diagnostics"),
    ]


def test_a_failing_listener_stops_neither_the_others_nor_the_devices(
    router: Router, link: FakeLink, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []

    def broken(e: CloudEvent) -> None:
        raise RuntimeError("listener broke")

    router.add_listener(broken)
    router.add_listener(lambda e: heard.append(e.name))
    router.subscribe(DEVICE, "weather")
    with caplog.at_level(logging.ERROR, logger="cyan.cloud.router"):
        router.publish(event("weather/rain", device_id=OTHER))
    assert heard == ["weather/rain"]
    assert names(link) == ["weather/rain"]
    assert "event listener failed for weather/rain" in caplog.text
    assert "listener broke" in caplog.text


def test_an_event_reaches_the_devices_whose_prefix_it_starts_with(router: Router) -> None:
    links = {device_id: FakeLink(live_device(device_id)) for device_id in (DEVICE, OTHER, THIRD)}
    for device_id, each in links.items():
        router.attach(device_id, each)
    router.subscribe(DEVICE, "weather")
    router.subscribe(OTHER, "w")
    router.subscribe(THIRD, "weather/snow")
    router.publish(event("weather/rain"))
    router.publish(event("weather/snow/heavy"))
    router.publish(event("wind"))
    router.publish(event("temperature"))
    assert names(links[DEVICE]) == ["weather/rain", "weather/snow/heavy"]
    assert names(links[OTHER]) == ["weather/rain", "weather/snow/heavy", "wind"]
    assert names(links[THIRD]) == ["weather/snow/heavy"]


def test_an_event_matching_several_prefixes_of_a_device_reaches_it_once(
    router: Router, link: FakeLink
) -> None:
    for prefix in ("w", "we", "weather", "weather"):
        router.subscribe(DEVICE, prefix)
    router.publish(event("weather/rain"))
    assert names(link) == ["weather/rain"]


def test_the_publishing_device_never_gets_its_own_event_back(router: Router) -> None:
    sender, listener = FakeLink(live_device(DEVICE)), FakeLink(live_device(OTHER))
    router.attach(DEVICE, sender)
    router.attach(OTHER, listener)
    router.subscribe(DEVICE, "weather")
    router.subscribe(OTHER, "weather")
    router.publish(event("weather/rain", device_id=DEVICE))
    assert sender.delivered == []
    assert names(listener) == ["weather/rain"]


@pytest.mark.parametrize("name", ["spark/device/diagnostics", "particle/device/updates/x"])
def test_a_devices_own_system_reports_reach_listeners_but_no_device(
    router: Router, link: FakeLink, name: str
) -> None:
    assert name.startswith(SYSTEM_EVENT_PREFIXES)
    heard: list[str] = []
    router.add_listener(lambda e: heard.append(e.name))
    router.subscribe(DEVICE, name.split("/")[0])
    router.publish(event(name, device_id=OTHER))
    assert heard == [name]
    assert link.delivered == []


def test_system_named_events_from_the_api_do_reach_devices(router: Router, link: FakeLink) -> None:
    router.subscribe(DEVICE, "spark")
    router.publish(event("spark/test", device_id=None))
    assert names(link) == ["spark/test"]


def test_only_the_slash_makes_a_system_report(router: Router, link: FakeLink) -> None:
    router.subscribe(DEVICE, "spark")
    router.publish(event("sparkling/water", device_id=OTHER))
    assert names(link) == ["sparkling/water"]


def test_a_subscription_of_a_device_not_connected_delivers_nothing(router: Router) -> None:
    router.subscribe(DEVICE, "weather")
    router.publish(event("weather/rain", device_id=OTHER))  # no link to deliver to: no error
    link = FakeLink(live_device(DEVICE))
    router.attach(DEVICE, link)
    router.publish(event("weather/rain", device_id=OTHER))
    assert link.delivered == []  # it connected after: it subscribes anew


def test_a_change_of_owner_reaches_the_link_and_the_registration_listeners(
    router: Router, link: FakeLink
) -> None:
    changed: list[str] = []
    router.on_registration_changed(changed.append)
    router.registration_changed(DEVICE, 5)
    router.registration_changed(DEVICE, None)
    router.registration_changed(OTHER, 3)  # offline: only the listeners hear it
    assert link.owners == [5, None]
    assert changed == [DEVICE, DEVICE, OTHER]


# -- the real gateway behind the router ---------------------------------------------------------

# A Photon on Device OS 0.7.0 says nothing of diagnostics in its Hello: the small limits.
OLD_HELLO = messages.HelloInfo(6, 1, messages.HelloFlags.GOODBYE, 6)


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path / "cloud") as started:
        yield started


async def subscribed_device(
    cloud: Cloud,
    subscriptions: list[tuple[str, bool]],
    hello: messages.HelloInfo | None = None,
) -> tuple[RawDevice, str]:
    """A registered device (the admin's) on a raw connection, its subscriptions in place."""
    device = await cloud.add_device(start=False)
    raw = await RawDevice.open(cloud.device_port)
    await raw.handshake(device.keys, hello=hello)
    assert raw.connection is not None
    for prefix, mine in subscriptions:
        raw.connection.subscribe(prefix, my_devices=mine)
    # The server reads one connection in order: once an event the device publishes after
    # its subscriptions reaches the router, the subscriptions are in.
    ready = asyncio.Event()
    marker = f"cyan-test/ready/{device.device_id}"
    cloud.node.router.add_listener(lambda e: ready.set() if e.name == marker else None)
    raw.connection.publish(messages.EventInfo(marker, None, 60, False))
    raw.flush()
    await asyncio.wait_for(ready.wait(), 5)
    return raw, device.device_id


async def delivered_until(raw: RawDevice, last: str, timeout_s: float = 5.0) -> list[str]:
    """The names of the events the device received, up to and including ``last``."""

    def received() -> list[str]:
        return [e.event.name for e in raw.events if isinstance(e, EventDelivered)]

    async def pump() -> None:
        while last not in received():
            await raw.pump(timeout_s)

    await asyncio.wait_for(pump(), timeout_s)
    return received()


async def test_events_reach_a_real_device_by_scope_and_owner(cloud: Cloud) -> None:
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    stranger = await cloud.node.store.users.ensure("stranger@example.com")
    raw, _ = await subscribed_device(cloud, [("mine", True), ("all", False)])
    router = cloud.node.router
    for name, owner, public in [
        ("mine/1", admin.id, False),  # the owner's private event: yes
        ("mine/2", stranger.id, False),  # someone else's: no
        ("mine/3", stranger.id, True),  # public, but "my devices" only: no
        ("all/1", stranger.id, True),  # the firehose takes public events: yes
        ("all/2", admin.id, False),  # but no private ones, not even the owner's
        ("none/1", admin.id, True),  # subscribed to nothing of the kind
        ("mine/end", admin.id, False),
    ]:
        router.publish(event(name, device_id=None, owner_id=owner, public=public))
    # One connection keeps its order: what was not there before the last event never comes.
    assert await delivered_until(raw, "mine/end") == ["mine/1", "all/1", "mine/end"]
    raw.close()


async def test_a_device_that_changed_hands_gets_its_new_owners_events(cloud: Cloud) -> None:
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    buyer = await cloud.node.store.users.ensure("buyer@example.com")
    raw, device_id = await subscribed_device(cloud, [("mine", True)])
    router = cloud.node.router
    router.publish(event("mine/before", owner_id=admin.id))
    assert await delivered_until(raw, "mine/before") == ["mine/before"]
    router.registration_changed(device_id, buyer.id)
    router.publish(event("mine/old-owner", owner_id=admin.id))
    router.publish(event("mine/new-owner", owner_id=buyer.id))
    assert await delivered_until(raw, "mine/new-owner") == ["mine/before", "mine/new-owner"]
    raw.close()


async def test_events_too_big_for_a_device_are_held_back_from_it_alone(cloud: Cloud) -> None:
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    old, old_id = await subscribed_device(cloud, [("big", True)], hello=OLD_HELLO)
    new, _ = await subscribed_device(cloud, [("big", True)])
    old_live = cloud.node.router.live(old_id)
    assert old_live is not None
    assert old_live.limits.event_data_bytes == 255
    long_name = "big/" + "n" * 61  # 65 bytes: over every release's 64
    router = cloud.node.router
    router.publish(event("big/data", owner_id=admin.id, data="d" * 256))
    router.publish(event("big/fits", owner_id=admin.id, data="d" * 255))
    router.publish(event(long_name, owner_id=admin.id))
    router.publish(event("big/end", owner_id=admin.id))
    assert await delivered_until(old, "big/end") == ["big/fits", "big/end"]
    assert await delivered_until(new, "big/end") == ["big/data", "big/fits", "big/end"]
    old.close()
    new.close()


async def test_requests_reach_a_real_device_until_it_goes(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    router = cloud.node.router
    assert await router.call_function(device.device_id, "digitalwrite", "D7,HIGH") == 1
    assert device.status.calls == 1
    assert await router.get_variable(device.device_id, "build") == (
        "cyan virtual Tinker, Device OS 2.3.1"
    )
    with pytest.raises(FunctionNotFound):
        await router.call_function(device.device_id, "nope", "")
    assert device.status.calls == 1  # asked again for its describe, never called
    await device.stop()
    await eventually(lambda: router.live(device.device_id) is None, 5, "the device offline")
    with pytest.raises(DeviceOffline):
        await router.call_function(device.device_id, "digitalwrite", "D7,HIGH")


# Few letters, so generated prefixes and names often start alike.
_TEXT = st.text(alphabet="ab/", max_size=6)


@given(
    st.lists(st.tuples(st.sampled_from([DEVICE, OTHER, THIRD]), _TEXT), max_size=12),
    st.lists(_TEXT, min_size=1, max_size=6),
)
def test_an_event_reaches_exactly_the_devices_with_a_prefix_of_its_name(
    subscriptions: list[tuple[str, str]], event_names: list[str]
) -> None:
    router = Router()
    links = {device_id: FakeLink(live_device(device_id)) for device_id in (DEVICE, OTHER, THIRD)}
    for device_id, link in links.items():
        router.attach(device_id, link)
    for device_id, prefix in subscriptions:
        router.subscribe(device_id, prefix)

    for name in event_names:
        router.publish(event(name, public=True))

    for device_id, link in links.items():
        prefixes = [prefix for who, prefix in subscriptions if who == device_id]
        expected = [name for name in event_names if any(name.startswith(p) for p in prefixes)]
        assert names(link) == expected
