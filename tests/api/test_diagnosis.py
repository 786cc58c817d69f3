"""Cyan's diagnosis routes and the cyan_last_failure field of a device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from cyan.store import ConnectionFailure, DroppedEvents, SessionUpdate, Store
from tests.api.conftest import DEVICE_A, DEVICE_BOB, Caller, make_caller


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_device_without_failures_reads_null(
    client: httpx.AsyncClient, alice: Caller
) -> None:
    reply = await client.get(f"/v1/devices/{DEVICE_A}", headers=alice.headers)
    assert reply.status_code == 200
    assert reply.json()["cyan_last_failure"] is None


async def test_dropped_events_are_counted_on_the_device(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    at = datetime(2026, 12, 4, 7, 0, 1, tzinfo=UTC)
    await store.presence.count_dropped_events([DroppedEvents(DEVICE_A, 5, 1, at)])
    await store.presence.count_dropped_events([DroppedEvents(DEVICE_A, 2, 0, at)])
    reply = await client.get(f"/v1/devices/{DEVICE_A}", headers=alice.headers)
    assert reply.json()["cyan_events_dropped"] == {
        "over_rate": 7,
        "too_big": 1,
        "last_at": "2026-12-04T07:00:01.000Z",
    }


async def test_the_last_failure_names_stage_cause_and_fix(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    await store.failures.record(
        [
            ConnectionFailure(now() - timedelta(seconds=9), "10.0.0.5", DEVICE_A, "timeout", "old"),
            ConnectionFailure(now(), "10.0.0.5", DEVICE_A, "key-mismatch", "keys differ"),
        ]
    )
    reply = await client.get(f"/v1/devices/{DEVICE_A}", headers=alice.headers)
    last = reply.json()["cyan_last_failure"]
    assert last["stage"] == "key-mismatch"
    assert last["reason"] == "keys differ"
    assert "differs from the one registered" in last["cause"]
    assert "cyan keys doctor" in last["fix"]
    assert last["remote_address"] == "10.0.0.5"

    history = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    assert history.status_code == 200
    body = history.json()
    assert [f["reason"] for f in body["failures"]] == ["keys differ", "old"]
    assert body["verdict"]["state"] == "failing"
    assert body["verdict"]["stage"] == "key-mismatch"


async def test_a_device_nothing_reached_says_to_run_doctor(
    client: httpx.AsyncClient, alice: Caller
) -> None:
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    verdict = reply.json()["verdict"]
    assert verdict["state"] == "silent"
    assert "cyan doctor" in verdict["fix"]


async def test_unnamed_failures_go_to_the_admin_only_unless_from_the_devices_address(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    await store.failures.record(
        [ConnectionFailure(now(), "10.9.9.9", None, "handshake-decrypt", "bad block")]
    )
    owner_view = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    assert owner_view.json()["unnamed_failures"] == []

    admin = await make_caller(store, "admin")
    await store.devices.add("d" * 24, b"k", owner_id=admin.user.id)
    admin_view = await client.get(f"/cyan/v1/devices/{'d' * 24}/failures", headers=admin.headers)
    body = admin_view.json()
    assert [f["remote_address"] for f in body["unnamed_failures"]] == ["10.9.9.9"]
    assert body["verdict"]["state"] == "unnamed-failures"
    assert "10.9.9.9 (this device, if it is there)" in body["verdict"]["summary"]
    assert body["verdict"]["stage"] == "handshake-decrypt"
    assert "cyan keys server" in body["verdict"]["fix"]


async def test_a_device_with_a_known_address_is_tied_only_to_failures_from_there(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    await store.presence.record_sessions(
        [SessionUpdate(DEVICE_A, ip="10.0.0.5", handshake_at=now() - timedelta(minutes=1))]
    )
    await store.failures.record(
        [
            ConnectionFailure(now(), "10.9.9.9", None, "handshake-decrypt", "someone else"),
            ConnectionFailure(now(), "10.0.0.5", None, "timeout", "stalled"),
        ]
    )
    admin = await make_caller(store, "admin")
    for caller in (alice, admin):
        reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=caller.headers)
        body = reply.json()
        assert [f["reason"] for f in body["unnamed_failures"]] == ["stalled"]
        assert body["verdict"]["stage"] == "timeout"
        assert "10.0.0.5 (this device's last address)" in body["verdict"]["summary"]


async def test_a_connection_that_dropped_after_it_was_up_is_no_failed_attempt(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    connected_at = now() - timedelta(minutes=5)
    await store.presence.record_sessions(
        [SessionUpdate(DEVICE_A, ip="10.0.0.5", handshake_at=connected_at)]
    )
    await store.failures.record(
        [ConnectionFailure(now(), "10.0.0.5", DEVICE_A, "keepalive-timeout", "no answer to ping")]
    )
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    verdict = reply.json()["verdict"]
    assert verdict["state"] == "dropped"
    assert verdict["summary"] == "offline: its connection dropped after it was up"
    assert verdict["stage"] == "keepalive-timeout"


async def test_a_device_that_left_cleanly_says_when_it_was_last_connected(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    connected_at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    await store.presence.record_sessions(
        [SessionUpdate(DEVICE_A, ip="10.0.0.5", handshake_at=connected_at)]
    )
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    verdict = reply.json()["verdict"]
    assert verdict["state"] == "silent"
    assert "it last connected at 2026-03-04T05:06:07.000Z" in verdict["summary"]


async def test_another_users_device_history_is_not_found(
    client: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_BOB}/failures", headers=alice.headers)
    assert reply.status_code == 404
    assert reply.json()["error"]


async def test_the_history_needs_a_token(client: httpx.AsyncClient, alice: Caller) -> None:
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures")
    assert reply.status_code == 400 or reply.status_code == 401
    assert "error" in reply.json()


async def test_server_identity_without_a_gateway_is_a_clear_error(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.get("/cyan/v1/server")
    assert reply.status_code == 400
    assert "without a device gateway" in reply.json()["error"]


async def test_the_admin_may_ask_about_a_device_no_one_registered(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    stranger = "e" * 24
    await store.failures.record(
        [ConnectionFailure(now(), "10.0.0.8", stranger, "unknown-device", "not registered")]
    )
    owner_view = await client.get(f"/cyan/v1/devices/{stranger}/failures", headers=alice.headers)
    assert owner_view.status_code == 404
    admin = await make_caller(store, "admin")
    admin_view = await client.get(f"/cyan/v1/devices/{stranger}/failures", headers=admin.headers)
    assert admin_view.status_code == 200
    assert admin_view.json()["verdict"]["stage"] == "unknown-device"


async def test_unnamed_failures_from_its_address_lead_over_an_old_drop(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    # A device given another server's key: its last good session dropped, and since then
    # every attempt from its address is refused before it names itself.
    connected_at = now() - timedelta(minutes=5)
    await store.presence.record_sessions(
        [SessionUpdate(DEVICE_A, ip="10.0.0.5", handshake_at=connected_at)]
    )
    await store.failures.record(
        [
            ConnectionFailure(
                now() - timedelta(minutes=4), "10.0.0.5", DEVICE_A, "session", "closed"
            ),
            ConnectionFailure(
                now() - timedelta(minutes=3), "10.0.0.5", None, "handshake-decrypt", "nonce"
            ),
            ConnectionFailure(now(), "10.0.0.5", None, "handshake-decrypt", "nonce again"),
        ]
    )
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    verdict = reply.json()["verdict"]
    assert verdict["state"] == "unnamed-failures"
    assert verdict["stage"] == "handshake-decrypt"
    assert verdict["summary"].startswith("2 connection attempts from 10.0.0.5")
    assert "cyan keys server" in verdict["fix"]


async def test_a_drop_after_the_unnamed_failures_is_a_drop(
    client: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    # The unnamed failure came first, the device connected after it and dropped later.
    await store.failures.record(
        [ConnectionFailure(now() - timedelta(minutes=6), "10.0.0.5", None, "timeout", "stall")]
    )
    await store.presence.record_sessions(
        [SessionUpdate(DEVICE_A, ip="10.0.0.5", handshake_at=now() - timedelta(minutes=5))]
    )
    await store.failures.record(
        [ConnectionFailure(now(), "10.0.0.5", DEVICE_A, "keepalive-timeout", "no answer")]
    )
    reply = await client.get(f"/cyan/v1/devices/{DEVICE_A}/failures", headers=alice.headers)
    assert reply.json()["verdict"]["state"] == "dropped"
