"""Batched connection writes and the one-query registration lookup, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cyan.store import Registration, SessionUpdate, Store, StoreError

A, B, UNKNOWN = "a" * 24, "b" * 24, "c" * 24


async def test_registration_is_key_and_owner(store: Store) -> None:
    owner = await store.users.ensure("ada")
    await store.devices.add(A, b"key-a", owner_id=owner.id)
    await store.devices.set_key(B, b"key-b")
    assert await store.devices.registration(A) == Registration(b"key-a", owner.id)
    assert await store.devices.registration(B.upper()) == Registration(b"key-b", None)
    assert await store.devices.registration(UNKNOWN) is None


async def test_record_sessions_applies_a_mixed_batch(store: Store) -> None:
    await store.devices.add(A, b"k", owner_id=None)
    await store.devices.add(B, b"k", owner_id=None)
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    await store.presence.record_sessions(
        [
            SessionUpdate(
                A,
                ip="10.0.0.7",
                handshake_at=at,
                platform_id=6,
                product_id=6,
                product_firmware_version=3,
            ),
            SessionUpdate(
                A, functions=("f1", "f2"), variables={"v": "int32"}, system_firmware_version="2302"
            ),
            SessionUpdate(B, functions=(), variables={}),
            SessionUpdate(
                UNKNOWN,
                ip="1.2.3.4",
                handshake_at=at,
                platform_id=6,
                product_id=6,
                product_firmware_version=1,
            ),
        ]
    )
    a = await store.devices.get(A)
    assert a is not None
    assert (a.last_ip, a.last_handshake_at, a.last_heard, a.online) == ("10.0.0.7", at, at, True)
    assert (a.platform_id, a.product_id, a.product_firmware_version) == (6, 6, 3)
    assert a.functions == ("f1", "f2")
    assert a.variables == {"v": "int32"}
    assert a.system_firmware_version == "2302"
    b = await store.devices.get(B)
    assert b is not None
    assert (b.online, b.last_ip, b.functions) == (False, None, ())
    assert await store.devices.get(UNKNOWN) is None  # skipped, not created


async def test_record_sessions_refuses_unknown_variable_types(store: Store) -> None:
    await store.devices.add(A, b"k", owner_id=None)
    with pytest.raises(StoreError, match="unknown variable types"):
        await store.presence.record_sessions(
            [SessionUpdate(A, functions=(), variables={"v": "float"})]
        )
    device = await store.devices.get(A)
    assert device is not None
    assert device.variables == {}


async def test_all_registrations(store: Store) -> None:
    owner = await store.users.ensure("ada")
    await store.devices.add(A, b"key-a", owner_id=owner.id)
    await store.devices.set_key(B, b"key-b")
    assert await store.devices.all_registrations() == {
        A: Registration(b"key-a", owner.id),
        B: Registration(b"key-b", None),
    }
