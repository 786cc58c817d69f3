"""device/options.py: what a virtual device is told, what it shows, and its error LEDs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from cyan.device import DEFAULT_PROFILE, DeviceOptions, DeviceStatus
from cyan.device.faults import closed_port
from cyan.device.options import ERROR_LEDS
from cyan.net.resolver import parse_dns_choice
from cyan.protocol import Stage, messages
from tests.dns import fake_dns
from tests.system import LOOPBACK, eventually, running_cloud


def test_the_defaults_are_a_photon_on_device_os_2() -> None:
    options = DeviceOptions()
    assert options.profile is DEFAULT_PROFILE
    assert options.server is None  # the address in the server key image
    assert (options.heartbeat_s, options.setup_after_s) == (30.0, 0.5)
    assert (options.idle_ping_s, options.ping_timeout_s) == (15.0, 10.0)
    assert (options.nagle, options.coalesce_replies) == (True, False)
    assert (options.stall_handshakes, options.dns_fallback, options.claim_code) == (0, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.heartbeat_s = 1.0  # type: ignore[misc]


def test_each_status_has_its_own_times_and_a_bounded_event_list() -> None:
    one, two = DeviceStatus(), DeviceStatus()
    one.times["start"] = 1.0
    assert two.times == {}
    for index in range(150):
        one.received_events.append(messages.EventInfo(f"e/{index}", None, 60, False))
    assert len(one.received_events) == 100
    assert one.received_events[0].name == "e/50"
    assert len(two.received_events) == 0
    assert (two.led, two.stage, two.connected, two.connects) == ("off", "off", False, 0)


def test_the_error_leds_a_photon_shows() -> None:
    unreachable = "blinking cyan, 3 orange blinks (cloud unreachable)"
    assert ERROR_LEDS[Stage.DNS] == ERROR_LEDS[Stage.TCP] == unreachable
    assert "decryption error" in ERROR_LEDS[Stage.HANDSHAKE_DECRYPT]
    assert "magenta" in ERROR_LEDS[Stage.SERVER_KEY]
    assert Stage.UNKNOWN_DEVICE not in ERROR_LEDS


@pytest.mark.parametrize(
    ("stage", "led"),
    [
        (Stage.TCP, ERROR_LEDS[Stage.TCP]),
        (Stage.DNS, ERROR_LEDS[Stage.DNS]),
        (Stage.REFUSED, "blinking red"),  # any stage without a LED of its own
    ],
)
async def test_a_failed_attempt_leaves_its_led_on_until_the_next(
    tmp_path: Path, stage: Stage, led: str
) -> None:
    async with running_cloud(tmp_path) as cloud, fake_dns() as dns_server:
        server = {
            Stage.TCP: f"{LOOPBACK}:{closed_port(LOOPBACK)}",
            Stage.DNS: f"cyan-test.invalid:{cloud.device_port}",
            Stage.REFUSED: f"{LOOPBACK}:{cloud.device_port}",
        }[stage]
        # Long back-off: the LED of the failure stays while the device waits to try again.
        device = await cloud.add_device(
            server=server,
            register=stage is not Stage.REFUSED,  # an unknown device is refused
            dns_server=parse_dns_choice(dns_server.address),
            backoff_initial_s=600.0,
            heartbeat_s=3600,
        )
        await eventually(lambda: device.status.last_error is not None, 10, "a failed attempt")
        error = device.status.last_error
        assert error is not None
        assert error.stage is stage
        assert device.status.led == led
        assert not device.status.connected
        task = cloud.tasks[-1]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
