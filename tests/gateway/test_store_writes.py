"""The gateway's batched store writes: one bad record never holds back the others."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cyan.gateway.writes import write_isolated
from cyan.protocol import ProtocolError, Stage
from cyan.store import ConnectionFailure, SessionUpdate, Store, StoreUnavailable
from tests.system import eventually, running_cloud

GOOD_A = "0123456789abcdef01234567"
GOOD_B = "89abcdef0123456789abcdef"
BAD = "00112233445566778899aabb"
KEY = b"\x30\x82 any bytes"


def handshake(device_id: str, at: datetime) -> SessionUpdate:
    return SessionUpdate(device_id, ip="192.0.2.9", handshake_at=at, platform_id=6)


async def test_a_bad_record_is_dropped_and_the_rest_of_its_batch_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}")
    try:
        for device_id in (GOOD_A, GOOD_B, BAD):
            await store.devices.add(device_id, KEY, owner_id=None)
        now = datetime.now(UTC)
        naive = datetime(2026, 1, 2, 3, 4, 5)  # the store refuses a time without a zone
        batch = [handshake(GOOD_A, now), handshake(BAD, naive), handshake(GOOD_B, now)]

        with caplog.at_level(logging.ERROR, logger="cyan.gateway"):
            await write_isolated("device sessions", store.presence.record_sessions, batch)

        for device_id in (GOOD_A, GOOD_B):
            record = await store.devices.get(device_id)
            assert record is not None
            assert record.last_handshake_at == now
        bad = await store.devices.get(BAD)
        assert bad is not None
        assert bad.last_handshake_at is None
        dropped = [r for r in caplog.records if "dropping" in r.getMessage()]
        assert len(dropped) == 1
        assert BAD in dropped[0].getMessage()
    finally:
        await store.close()


async def test_an_unreachable_store_keeps_everything_for_later(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}")
    await store.close()  # a closed store stands for one that cannot be reached

    with pytest.raises(StoreUnavailable):
        await write_isolated(
            "device sessions",
            store.presence.record_sessions,
            [handshake(GOOD_A, datetime.now(UTC))],
        )


async def test_a_device_with_an_empty_describe_leaves_every_devices_writes_working(
    tmp_path: Path,
) -> None:
    # Device OS 0.7.0 answers the first describe with empty lists (setup() has not run).
    async with running_cloud(tmp_path, describe_again_s=600.0) as cloud:
        empty = await cloud.add_device(firmware="0.7.0", setup_after_s=None)
        other = await cloud.add_device(firmware="2.3.1")
        await eventually(lambda: empty.status.connected, 10, "connected")
        await cloud.online(other)
        await eventually(lambda: cloud.node.router.live(empty.device_id) is not None, 5)
        live = cloud.node.router.live(empty.device_id)
        assert live is not None
        assert (live.functions, dict(live.variables)) == ((), {})

        await cloud.node.gateway.flush()

        assert cloud.node.gateway.pending_writes == 0
        for device in (empty, other):
            record = await cloud.node.store.devices.get(device.device_id)
            assert record is not None
            assert record.online
            assert record.last_handshake_at is not None
        empty_record = await cloud.node.store.devices.get(empty.device_id)
        assert empty_record is not None
        assert (empty_record.functions, empty_record.variables) == ((), {})


async def test_a_flush_returns_only_once_what_an_earlier_flush_took_is_written(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud:
        gateway, failures = cloud.node.gateway, cloud.node.store.failures
        real_record = failures.record
        entered, release = asyncio.Event(), asyncio.Event()
        order: list[str] = []

        async def held_record(batch: Sequence[ConnectionFailure]) -> None:
            if not entered.is_set():  # the first batch waits, as on a slow disk
                entered.set()
                await release.wait()
            await real_record(batch)
            order.extend(f"written {failure.device_id}" for failure in batch)

        failures.record = held_record  # type: ignore[method-assign,assignment]
        gateway.record_failure(ProtocolError(Stage.HELLO, "first", device_id=GOOD_A), "192.0.2.1")
        first = asyncio.create_task(gateway.flush())
        await entered.wait()
        gateway.record_failure(ProtocolError(Stage.HELLO, "second", device_id=GOOD_B), "192.0.2.1")
        second = asyncio.create_task(gateway.flush())
        second.add_done_callback(lambda _: order.append("second flush returned"))

        # Without the lock the second flush writes its own batch and returns at once.
        await asyncio.wait({second}, timeout=1.0)
        release.set()
        await asyncio.gather(first, second)

        assert order == [f"written {GOOD_A}", f"written {GOOD_B}", "second flush returned"]
