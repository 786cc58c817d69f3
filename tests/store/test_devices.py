"""Claim, release, rename, notes and claim codes, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cyan.store import UNCHANGED, ClaimOutcome, Store, StoreError

A, B, UNKNOWN = "a" * 24, "b" * 24, "c" * 24


async def test_claim_only_unowned_devices(store: Store) -> None:
    ada, bob = await store.ensure_user("ada"), await store.ensure_user("bob")
    await store.set_device_key(A, b"k")
    assert await store.claim_device(A.upper(), ada.id) is ClaimOutcome.CLAIMED
    assert await store.claim_device(A, ada.id) is ClaimOutcome.ALREADY_YOURS
    assert await store.claim_device(A, bob.id) is ClaimOutcome.OWNED_BY_OTHER
    assert await store.claim_device(UNKNOWN, bob.id) is ClaimOutcome.UNKNOWN
    assert await store.claim_device("not-an-id", bob.id) is ClaimOutcome.UNKNOWN
    record = await store.get_device(A)
    assert record is not None
    assert record.owner_id == ada.id


async def test_release_only_by_the_owner(store: Store) -> None:
    ada, bob = await store.ensure_user("ada"), await store.ensure_user("bob")
    await store.add_device(A, b"k", owner_id=ada.id)
    assert not await store.release_device(A, bob.id)
    assert await store.release_device(A, ada.id)
    record = await store.get_device(A)
    assert record is not None
    assert record.owner_id is None
    assert await store.device_key(A) == b"k"  # released, not forgotten
    assert await store.claim_device(A, bob.id) is ClaimOutcome.CLAIMED


async def test_update_name_and_notes(store: Store) -> None:
    await store.add_device(A, b"k", owner_id=None, name="old")
    renamed = await store.update_device(A, name="porch")
    assert (renamed.name, renamed.notes) == ("porch", None)
    noted = await store.update_device(A, notes="by the door")
    assert (noted.name, noted.notes) == ("porch", "by the door")
    cleared = await store.update_device(A, name=None, notes=UNCHANGED)
    assert (cleared.name, cleared.notes) == (None, "by the door")
    with pytest.raises(StoreError):
        await store.update_device(A, name="")
    with pytest.raises(StoreError):
        await store.update_device(UNKNOWN, name="x")


async def test_claim_code_gives_an_unowned_device_once(store: Store) -> None:
    ada, bob = await store.ensure_user("ada"), await store.ensure_user("bob")
    await store.set_device_key(A, b"k")
    await store.add_device(B, b"k", owner_id=bob.id)
    code = await store.create_claim_code(ada.id)
    assert len(code) == 63
    assert await store.redeem_claim_code("wrong" + code[5:], A) is None
    assert await store.redeem_claim_code(code, B) is None  # bob's device stays bob's
    assert await store.redeem_claim_code(code, A) == ada.id
    assert await store.redeem_claim_code(code, A) is None  # spent
    record = await store.get_device(A)
    assert record is not None
    assert record.owner_id == ada.id


async def test_expired_claim_code_is_refused(store: Store) -> None:
    ada = await store.ensure_user("ada")
    await store.set_device_key(A, b"k")
    code = await store.create_claim_code(ada.id, now=datetime.now(UTC) - timedelta(days=2))
    assert await store.redeem_claim_code(code, A) is None
