"""Claim, release, rename, notes and claim codes, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cyan.store import UNCHANGED, ClaimOutcome, Store, StoreError

A, B, UNKNOWN = "a" * 24, "b" * 24, "c" * 24


async def test_claim_only_unowned_devices(store: Store) -> None:
    ada, bob = await store.users.ensure("ada"), await store.users.ensure("bob")
    await store.devices.set_key(A, b"k")
    assert await store.devices.claim(A.upper(), ada.id) is ClaimOutcome.CLAIMED
    assert await store.devices.claim(A, ada.id) is ClaimOutcome.ALREADY_YOURS
    assert await store.devices.claim(A, bob.id) is ClaimOutcome.OWNED_BY_OTHER
    assert await store.devices.claim(UNKNOWN, bob.id) is ClaimOutcome.UNKNOWN
    assert await store.devices.claim("not-an-id", bob.id) is ClaimOutcome.UNKNOWN
    record = await store.devices.get(A)
    assert record is not None
    assert record.owner_id == ada.id


async def test_release_only_by_the_owner(store: Store) -> None:
    ada, bob = await store.users.ensure("ada"), await store.users.ensure("bob")
    await store.devices.add(A, b"k", owner_id=ada.id)
    assert not await store.devices.release(A, bob.id)
    assert await store.devices.release(A, ada.id)
    record = await store.devices.get(A)
    assert record is not None
    assert record.owner_id is None
    assert await store.devices.key(A) == b"k"  # released, not forgotten
    assert await store.devices.claim(A, bob.id) is ClaimOutcome.CLAIMED


async def test_update_name_and_notes(store: Store) -> None:
    await store.devices.add(A, b"k", owner_id=None, name="old")
    renamed = await store.devices.update(A, name="porch")
    assert (renamed.name, renamed.notes) == ("porch", None)
    noted = await store.devices.update(A, notes="by the door")
    assert (noted.name, noted.notes) == ("porch", "by the door")
    cleared = await store.devices.update(A, name=None, notes=UNCHANGED)
    assert (cleared.name, cleared.notes) == (None, "by the door")
    with pytest.raises(StoreError):
        await store.devices.update(A, name="")
    with pytest.raises(StoreError):
        await store.devices.update(UNKNOWN, name="x")


async def test_claim_code_gives_an_unowned_device_once(store: Store) -> None:
    ada, bob = await store.users.ensure("ada"), await store.users.ensure("bob")
    await store.devices.set_key(A, b"k")
    await store.devices.add(B, b"k", owner_id=bob.id)
    code = await store.claims.create(ada.id)
    assert len(code) == 63
    assert await store.claims.redeem("wrong" + code[5:], A) is None
    assert await store.claims.redeem(code, B) is None  # bob's device stays bob's
    assert await store.claims.redeem(code, A) == ada.id
    assert await store.claims.redeem(code, A) is None  # spent
    record = await store.devices.get(A)
    assert record is not None
    assert record.owner_id == ada.id


async def test_expired_claim_code_is_refused(store: Store) -> None:
    ada = await store.users.ensure("ada")
    await store.devices.set_key(A, b"k")
    code = await store.claims.create(ada.id, now=datetime.now(UTC) - timedelta(days=2))
    assert await store.claims.redeem(code, A) is None
