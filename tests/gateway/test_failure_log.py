"""gateway/failure_log.py: a flood of failed connections from one address is one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cyan.gateway.failure_log import MAX_ADDRESSES, FailureLog
from tests.system import RawDevice, eventually, running_cloud


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cyan.gateway"]


def test_repeats_within_the_interval_are_counted_and_said_once_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "cyan.gateway")
    failures = FailureLog(interval_s=60)
    for second in range(5):
        line = f"line {second}"
        failures.failed("10.0.0.9", "nonce", line.__str__, f"reason {second}", now=second)
    failures.failed("10.0.0.9", "decrypt", lambda: "another stage", "bad key", now=5)
    failures.failed("10.0.0.7", "nonce", lambda: "another address", "short", now=5)
    assert warnings(caplog) == ["line 0", "another stage", "another address"]
    failures.flush(now=59)
    assert len(warnings(caplog)) == 3
    failures.flush(now=61)
    assert warnings(caplog)[3:] == [
        "4 more connections from 10.0.0.9 failed at stage nonce in the last 61 s "
        "(the last: reason 4)"
    ]
    failures.failed("10.0.0.9", "nonce", lambda: "a new interval", "again", now=62)
    assert warnings(caplog)[-1] == "a new interval"


def test_the_addresses_followed_are_bounded() -> None:
    failures = FailureLog(interval_s=60)
    for index in range(MAX_ADDRESSES + 10):
        failures.failed(f"10.{index >> 16}.{(index >> 8) & 255}.{index & 255}", "nonce", str, "", 0)
    assert len(failures._windows) == MAX_ADDRESSES


async def test_fifty_bad_connections_from_one_address_log_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cyan.gateway")
    async with running_cloud(tmp_path) as cloud:
        for _ in range(50):
            raw = await RawDevice.open(cloud.device_port)
            await raw.read_exactly(40)
            raw.write(b"\x00" * 17)
            raw.close()
        gateway = cloud.node.gateway
        await eventually(lambda: len(gateway.failures) == 50, 20, "50 failures recorded")
        lines = [line for line in warnings(caplog) if "failed at stage" in line]
        assert len(lines) == 1, lines
        gateway.failure_log.flush(gateway.monotonic() + gateway.failure_log.interval_s)
        assert "49 more connections from 127.0.0.1 failed at stage nonce" in warnings(caplog)[-1]


def test_a_repeat_does_not_make_its_line() -> None:
    """The line names a diagnosis; a scanner's thousand repeats a second cost a count."""
    failures = FailureLog(interval_s=60)
    made: list[int] = []

    def line() -> str:
        made.append(1)
        return "line"

    assert [failures.failed("10.0.0.9", "nonce", line, "r", now=n) for n in range(5)] == [
        True,
        False,
        False,
        False,
        False,
    ]
    assert len(made) == 1
