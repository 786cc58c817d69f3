"""device/profiles.py: what each Device OS release does on connect, on the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyan.bus.events import CloudEvent
from cyan.device import DEFAULT_PROFILE, PROFILES
from cyan.firmware import MAX_BINARY_BYTES
from cyan.protocol import ota
from cyan.protocol.messages import HelloFlags
from tests.system import eventually, running_cloud


def test_the_default_is_2_3_1_and_each_profile_names_its_release() -> None:
    assert DEFAULT_PROFILE is PROFILES["2.3.1"]
    assert {name: p.version for name, p in PROFILES.items()} == {n: n for n in PROFILES}


@pytest.mark.parametrize(
    ("release", "module", "limits"),
    [
        ("0.7.0", 207, (63, 12, 255, "Device OS older than 0.8")),
        ("1.5.2", 1512, (622, 64, 622, "Device OS 0.8 to 2.x")),
        ("2.3.1", 2302, (622, 64, 622, "Device OS 0.8 to 2.x")),
    ],
)
def test_limits_follow_the_releases_system_module(
    release: str, module: int, limits: tuple[int, int, int, str]
) -> None:
    profile = PROFILES[release]
    assert profile.system_module_version == module
    found = profile.limits
    assert (found.function_argument_bytes, found.name_bytes) == limits[:2]
    assert (found.event_data_bytes, found.basis) == limits[2:]


def test_only_device_os_2_says_goodbye_and_describes_itself() -> None:
    for name, profile in PROFILES.items():
        new = name == "2.3.1"
        assert bool(profile.hello_flags & HelloFlags.GOODBYE) is new
        assert bool(profile.hello_flags & HelloFlags.DEVICE_INITIATED_DESCRIBE) is new
        assert profile.posts_describe is new
        assert profile.separate_responses is new
        assert profile.requests_time


@pytest.mark.parametrize("release", sorted(PROFILES))
async def test_what_a_release_sends_on_connect(tmp_path: Path, release: str) -> None:
    profile = PROFILES[release]
    async with running_cloud(tmp_path) as cloud:
        heard: list[CloudEvent] = []
        cloud.node.router.add_listener(heard.append)
        device = await cloud.add_device(firmware=release, heartbeat_s=3600)
        await cloud.online(device)
        names = [name for name, _ in profile.connect_events]
        await eventually(lambda: {e.name for e in heard} >= set(names), 10, "connect events")
        reports = {e.name: e.data for e in heard if e.device_id == device.device_id}
        assert reports["spark/hardware/max_binary"] == str(MAX_BINARY_BYTES)
        assert reports[ota.CHUNK_SIZE_EVENT] == str(ota.DEFAULT_CHUNK_BYTES)
        for name, data in profile.connect_events:
            assert reports[name] == data
        session = next(s for s in cloud.node.gateway.sessions if s.device_id == device.device_id)
        subscriptions = {(s.prefix, s.my_devices) for s in session.requests.subscriptions}
        assert subscriptions == set(profile.system_subscriptions)
        live = session.live
        assert live.self_describes is profile.posts_describe
        assert live.ota_chunk_bytes == ota.DEFAULT_CHUNK_BYTES
        assert live.system_version == release  # from its system describe
        assert device.status.server_time is not None
