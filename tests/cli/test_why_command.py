"""`cyan device why` in process, against a real SQLite store: what it says beside the
verdict (events the gateway dropped)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cyan.settings import ADMIN_USERNAME
from cyan.store import DroppedEvents, Store
from tests.cli.test_keys_commands import cyan, with_store
from tests.served import served_data_dir

DEVICE = "0123456789abcdef01234567"


def device_with_drops(data_dir: Path, over_rate: int, too_big: int) -> None:
    async def work(store: Store) -> None:
        admin = await store.users.ensure(ADMIN_USERNAME)
        await store.devices.add(DEVICE, b"key", owner_id=admin.id)
        if over_rate or too_big:
            at = datetime(2026, 12, 4, 7, 0, 1, tzinfo=UTC)
            await store.presence.count_dropped_events(
                [DroppedEvents(DEVICE, over_rate, too_big, at)]
            )

    with_store(served_data_dir(data_dir), work)


def test_dropped_events_are_named_with_what_to_do(tmp_path: Path) -> None:
    device_with_drops(tmp_path, 7, 2)
    result = cyan("device", "why", DEVICE, "--data-dir", str(tmp_path))
    text = " ".join((result.stdout + result.stderr).split())
    assert "Events dropped (last 2026-12-04 07:00:01 UTC):" in text
    assert "7 over the rate limit" in text
    assert "gateway.events_per_s" in text
    assert "2 too big" in text
    shown = json.loads(cyan("device", "why", DEVICE, "--data-dir", str(tmp_path), "--json").stdout)
    assert shown["events_dropped"] == {
        "over_rate": 7,
        "too_big": 2,
        "last_at": "2026-12-04T07:00:01.000Z",
    }


def test_nothing_is_said_of_events_when_none_were_dropped(tmp_path: Path) -> None:
    device_with_drops(tmp_path, 0, 0)
    result = cyan("device", "why", DEVICE, "--data-dir", str(tmp_path))
    assert "Events dropped" not in result.stdout + result.stderr
    assert "nothing it tried reached this" in result.stderr
