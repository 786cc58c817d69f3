"""cyan.store against real databases: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from cyan.store import DeviceRecord, PresenceUpdate, Store, StoreError, UserRecord, migrate
from cyan.store.models import Base
from tests.postgres import PostgresServer

DEVICE_1 = "0123456789abcdef01234567"
DEVICE_2 = "89abcdef0123456789abcdef"
DEVICE_3 = "aaaaaaaaaaaaaaaaaaaaaaaa"
UNKNOWN = "ffffffffffffffffffffffff"
KEY_1 = b"\x30\x82\x01\x22 first key"
KEY_2 = b"\x30\x82\x01\x22 second key"
T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection that bypasses Store, for looking at what it actually wrote."""
    engine = migrate.create_engine(migrate.parse_url(url))
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        await engine.dispose()


async def make_user(store: Store, name: str = "alice") -> UserRecord:
    return await store.users.ensure(name)


# migrations


async def test_open_migrates_to_head(store: Store) -> None:
    async with raw(store.url) as connection:
        current = await connection.run_sync(migrate.current_revision)
    assert current is not None
    assert current == migrate.head_revision()
    # The shortcut that opens a migrated database without Alembic knows the same head.
    assert migrate.head_revision() == migrate.SCHEMA_HEAD


async def test_migrated_schema_matches_models(store: Store) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with raw(store.url) as connection:
        assert await connection.run_sync(diff) == []


async def test_open_twice_is_idempotent(store_url: str) -> None:
    first = await Store.open(store_url)
    user = await first.users.ensure("alice")
    await first.close()
    second = await Store.open(store_url)
    try:
        assert await second.users.get(user.id) == user
    finally:
        await second.close()
    # And straight through Alembic on a database already at head.
    engine = migrate.create_engine(migrate.parse_url(store_url))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


async def test_reopen_loses_nothing(store_url: str) -> None:
    store = await Store.open(store_url)
    alice = await store.users.ensure("alice")
    token = await store.tokens.create(alice.id, client_id="cli")
    await store.devices.add(DEVICE_1, KEY_1, owner_id=alice.id, name="kitchen")
    await store.devices.set_key(DEVICE_2, KEY_2)
    await store.presence.record_handshake(
        DEVICE_1, ip="10.0.0.7", at=T0, platform_id=6, product_id=6, product_firmware_version=3
    )
    await store.presence.record_describe(
        DEVICE_1, functions=["led"], variables={"temp": "double"}, system_firmware_version="1.5.2"
    )
    before = await store.devices.all(owner_id=None)
    await store.close()

    reopened = await Store.open(store_url)
    try:
        assert await reopened.devices.all(owner_id=None) == before
        assert await reopened.tokens.user_for(token) == alice
        assert await reopened.devices.key(DEVICE_1) == KEY_1
        assert await reopened.devices.key(DEVICE_2) == KEY_2
    finally:
        await reopened.close()


# opening and closing


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'dir' / 'cyan.db'}"
    store = await Store.open(url)
    try:
        assert (tmp_path / "new" / "dir" / "cyan.db").is_file()
        async with raw(store.url) as connection:
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            # 1 is NORMAL.
            assert (await connection.exec_driver_sql("PRAGMA synchronous")).scalar() == 1
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await store.close()


async def test_plain_urls_get_async_drivers(tmp_path: Path, postgres_url: str) -> None:
    sqlite = await Store.open(f"sqlite:///{tmp_path / 'plain.db'}")
    await sqlite.close()
    assert sqlite.url.startswith("sqlite+aiosqlite:///")
    plain = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    postgres = await Store.open(plain)
    await postgres.close()
    assert postgres.url == postgres_url


async def test_repr_hides_password(postgres_server: PostgresServer, postgres_url: str) -> None:
    store = await Store.open(postgres_url)
    try:
        assert postgres_server.password in store.url
        assert postgres_server.password not in repr(store)
        assert "***" in repr(store)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:pw@127.0.0.1/cyan",
        "not a url",
        # Port 1 on loopback: nothing listens, the connection is refused.
        "postgresql+asyncpg://cyan:pw@127.0.0.1:1/cyan",
    ],
)
async def test_open_bad_url_raises_store_error(url: str) -> None:
    with pytest.raises(StoreError):
        await Store.open(url)


async def test_closed_store_refuses_calls(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.users.get(1)
    await store.close()  # closing twice is harmless


# users and tokens


async def test_ensure_user_gets_or_creates_case_insensitively(store: Store) -> None:
    alice = await store.users.ensure("Alice")
    assert alice.username == "Alice"
    assert alice.created_at.tzinfo is UTC
    assert await store.users.ensure("alice") == alice
    assert await store.users.ensure("ALICE") == alice
    bob = await store.users.ensure("bob")
    assert bob.id != alice.id
    assert await store.users.get(alice.id) == alice
    assert await store.users.get(bob.id) == bob
    assert await store.users.get(bob.id + 1000) is None


async def test_ensure_user_rejects_blank(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.users.ensure("  ")


async def test_token_round_trip_and_only_hash_stored(store: Store) -> None:
    alice = await make_user(store)
    token = await store.tokens.create(alice.id, client_id="particle-cli")
    assert re.fullmatch(r"[0-9a-f]{40}", token)
    assert await store.tokens.user_for(token) == alice
    assert await store.tokens.user_for("0" * 40) is None

    async with raw(store.url) as connection:
        rows = (await connection.exec_driver_sql("SELECT * FROM access_tokens")).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0]["client_id"] == "particle-cli"
    assert rows[0]["user_id"] == alice.id
    assert all(token not in str(value) for value in rows[0].values())


async def test_tokens_are_distinct(store: Store) -> None:
    alice = await make_user(store)
    tokens = {await store.tokens.create(alice.id) for _ in range(5)}
    assert len(tokens) == 5
    for token in tokens:
        assert await store.tokens.user_for(token) == alice


async def test_token_expiry(store: Store) -> None:
    alice = await make_user(store)
    now = datetime.now(UTC)
    expired = await store.tokens.create(alice.id, expires_at=now - timedelta(seconds=1))
    valid = await store.tokens.create(alice.id, expires_at=now + timedelta(hours=1))
    # Expressed in another zone, still an instant in the past.
    eastern = timezone(timedelta(hours=-5))
    expired_other_zone = await store.tokens.create(
        alice.id, expires_at=(now - timedelta(minutes=1)).astimezone(eastern)
    )
    assert await store.tokens.user_for(expired) is None
    assert await store.tokens.user_for(expired_other_zone) is None
    assert await store.tokens.user_for(valid) == alice


async def test_revoke_token(store: Store) -> None:
    alice = await make_user(store)
    token = await store.tokens.create(alice.id)
    other = await store.tokens.create(alice.id)
    assert await store.tokens.revoke(token) is True
    assert await store.tokens.user_for(token) is None
    assert await store.tokens.revoke(token) is False
    assert await store.tokens.user_for(other) == alice


async def test_create_token_rejects_unknown_user_and_naive_expiry(store: Store) -> None:
    alice = await make_user(store)
    with pytest.raises(StoreError):
        await store.tokens.create(alice.id + 1000)
    with pytest.raises(StoreError, match="timezone"):
        await store.tokens.create(alice.id, expires_at=datetime(2030, 1, 1))


# devices


async def test_add_device(store: Store) -> None:
    alice = await make_user(store)
    added = await store.devices.add(DEVICE_1.upper(), KEY_1, owner_id=alice.id, name="kitchen")
    assert added.id == DEVICE_1
    assert added.owner_id == alice.id
    assert added.name == "kitchen"
    assert added.online is False
    assert added.functions == ()
    assert added.variables == {}
    assert added.created_at.tzinfo is UTC
    assert await store.devices.get(DEVICE_1) == added
    assert await store.devices.get(DEVICE_1.upper()) == added
    assert await store.devices.key(DEVICE_1) == KEY_1


async def test_add_device_twice_replaces_key_keeps_fields(store: Store) -> None:
    alice = await make_user(store)
    first = await store.devices.add(DEVICE_1, KEY_1, owner_id=alice.id, name="kitchen")
    second = await store.devices.add(DEVICE_1, KEY_2, owner_id=None)
    assert await store.devices.key(DEVICE_1) == KEY_2
    assert second == first
    bob = await make_user(store, "bob")
    third = await store.devices.add(DEVICE_1, KEY_1, owner_id=bob.id, name="garage")
    assert (third.owner_id, third.name) == (bob.id, "garage")
    assert await store.devices.key(DEVICE_1) == KEY_1
    assert len(await store.devices.all(owner_id=None)) == 1


@pytest.mark.parametrize(
    "bad_id",
    ["", "0123", DEVICE_1 + "0", DEVICE_1[:-1], "g" * 24, DEVICE_1[:-1] + " ", "0x" + DEVICE_1[2:]],
)
async def test_invalid_device_id_raises(store: Store, bad_id: str) -> None:
    with pytest.raises(StoreError, match="invalid device id"):
        await store.devices.add(bad_id, KEY_1, owner_id=None)
    with pytest.raises(StoreError, match="invalid device id"):
        await store.devices.set_key(bad_id, KEY_1)
    assert await store.devices.get(bad_id) is None
    assert await store.devices.all(owner_id=None) == []


async def test_add_device_rejects_unknown_owner_and_empty_key(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.devices.add(DEVICE_1, KEY_1, owner_id=4242)
    with pytest.raises(StoreError):
        await store.devices.add(DEVICE_1, b"", owner_id=None)
    assert await store.devices.get(DEVICE_1) is None


async def test_set_device_key(store: Store) -> None:
    await store.devices.set_key(DEVICE_1.upper(), KEY_1)
    created = await store.devices.get(DEVICE_1)
    assert created is not None
    assert created.owner_id is None
    assert await store.devices.key(DEVICE_1) == KEY_1

    alice = await make_user(store)
    await store.devices.add(DEVICE_2, KEY_1, owner_id=alice.id, name="porch")
    await store.devices.set_key(DEVICE_2, KEY_2)
    assert await store.devices.key(DEVICE_2) == KEY_2
    kept = await store.devices.get(DEVICE_2)
    assert kept is not None
    assert (kept.owner_id, kept.name) == (alice.id, "porch")


async def test_unknown_device_lookups(store: Store) -> None:
    assert await store.devices.get(UNKNOWN) is None
    assert await store.devices.key(UNKNOWN) is None
    assert await store.devices.find(UNKNOWN, owner_id=None) is None


async def test_find_device(store: Store) -> None:
    alice = await make_user(store)
    bob = await make_user(store, "bob")
    mine = await store.devices.add(DEVICE_1, KEY_1, owner_id=alice.id, name="kitchen")
    theirs = await store.devices.add(DEVICE_2, KEY_1, owner_id=bob.id, name="garage")

    assert await store.devices.find(DEVICE_1.upper(), owner_id=alice.id) == mine
    assert await store.devices.find("kitchen", owner_id=alice.id) == mine
    assert await store.devices.find("kitchen", owner_id=None) == mine
    # Names match exactly.
    assert await store.devices.find("Kitchen", owner_id=alice.id) is None
    # Someone else's device, by id or name, is invisible to an owner.
    assert await store.devices.find(DEVICE_2, owner_id=alice.id) is None
    assert await store.devices.find("garage", owner_id=alice.id) is None
    assert await store.devices.find("garage", owner_id=bob.id) == theirs
    assert await store.devices.find(DEVICE_2, owner_id=None) == theirs


async def test_find_device_name_that_looks_like_an_id(store: Store) -> None:
    alice = await make_user(store)
    # A device named with another device's id: the id wins, the name still works.
    named = await store.devices.add(DEVICE_1, KEY_1, owner_id=alice.id, name=DEVICE_3)
    assert await store.devices.find(DEVICE_3, owner_id=alice.id) == named
    real = await store.devices.add(DEVICE_3, KEY_1, owner_id=alice.id)
    assert await store.devices.find(DEVICE_3, owner_id=alice.id) == real


async def test_list_devices_order_and_owner_filter(store: Store) -> None:
    alice = await make_user(store)
    bob = await make_user(store, "bob")
    await store.devices.add(DEVICE_3, KEY_1, owner_id=alice.id, name="attic")
    await store.devices.add(DEVICE_2, KEY_1, owner_id=alice.id)
    await store.devices.add(DEVICE_1, KEY_1, owner_id=alice.id, name="zebra")
    await store.devices.add(UNKNOWN, KEY_1, owner_id=bob.id, name="bobs")
    await store.devices.set_key("bbbbbbbbbbbbbbbbbbbbbbbb", KEY_1)

    mine = await store.devices.all(owner_id=alice.id)
    assert [d.id for d in mine] == [DEVICE_3, DEVICE_1, DEVICE_2]
    everything = await store.devices.all(owner_id=None)
    assert [d.name for d in everything] == ["attic", "bobs", "zebra", None, None]
    assert [d.id for d in everything][3:] == [DEVICE_2, "bbbbbbbbbbbbbbbbbbbbbbbb"]
    assert await store.devices.all(owner_id=bob.id + 1000) == []


async def test_deleting_a_user_orphans_devices_and_drops_tokens(store: Store) -> None:
    alice = await make_user(store)
    token = await store.tokens.create(alice.id)
    await store.devices.add(DEVICE_1, KEY_1, owner_id=alice.id)
    async with raw(store.url) as connection:
        await connection.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": alice.id})
    orphan = await store.devices.get(DEVICE_1)
    assert orphan is not None
    assert orphan.owner_id is None
    assert await store.tokens.user_for(token) is None
    async with raw(store.url) as connection:
        count = await connection.scalar(sa.text("SELECT count(*) FROM access_tokens"))
    assert count == 0


# device events


async def test_record_handshake(store: Store) -> None:
    await store.devices.set_key(DEVICE_1, KEY_1)
    # A non-UTC zone in, the same instant in UTC out.
    at = T0.astimezone(timezone(timedelta(hours=2)))
    await store.presence.record_handshake(
        DEVICE_1.upper(),
        ip="192.0.2.10",
        at=at,
        platform_id=6,
        product_id=6,
        product_firmware_version=4,
    )
    device = await store.devices.get(DEVICE_1)
    assert device is not None
    assert device.online is True
    assert device.last_ip == "192.0.2.10"
    assert (device.platform_id, device.product_id, device.product_firmware_version) == (6, 6, 4)
    assert device.last_handshake_at == T0
    assert device.last_heard == T0
    assert device.last_heard is not None
    assert device.last_heard.tzinfo is UTC


async def test_record_handshake_unknown_or_naive(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown device"):
        await store.presence.record_handshake(
            UNKNOWN, ip="x", at=T0, platform_id=6, product_id=6, product_firmware_version=1
        )
    await store.devices.set_key(DEVICE_1, KEY_1)
    with pytest.raises(StoreError, match="timezone"):
        await store.presence.record_handshake(
            DEVICE_1,
            ip="x",
            at=T0.replace(tzinfo=None),
            platform_id=6,
            product_id=6,
            product_firmware_version=1,
        )


async def test_record_describe(store: Store) -> None:
    await store.devices.set_key(DEVICE_1, KEY_1)
    variables = {"temp": "double", "count": "int32", "label": "string", "on": "bool"}
    await store.presence.record_describe(
        DEVICE_1, functions=["led", "reset"], variables=variables, system_firmware_version="1.5.2"
    )
    device = await store.devices.get(DEVICE_1)
    assert device is not None
    assert device.functions == ("led", "reset")
    assert device.variables == variables
    assert device.system_firmware_version == "1.5.2"

    # A describe without system info replaces the lists but keeps the version.
    await store.presence.record_describe(DEVICE_1, functions=(), variables={})
    device = await store.devices.get(DEVICE_1)
    assert device is not None
    assert (device.functions, device.variables) == ((), {})
    assert device.system_firmware_version == "1.5.2"


async def test_record_describe_rejects_bad_input(store: Store) -> None:
    await store.devices.set_key(DEVICE_1, KEY_1)
    with pytest.raises(StoreError, match="variable types"):
        await store.presence.record_describe(DEVICE_1, functions=[], variables={"x": "float"})
    with pytest.raises(StoreError):
        await store.presence.record_describe(DEVICE_1, functions="led", variables={})
    with pytest.raises(StoreError, match="unknown device"):
        await store.presence.record_describe(UNKNOWN, functions=[], variables={})


async def test_record_presence_batch(store: Store) -> None:
    for device_id in (DEVICE_1, DEVICE_2, DEVICE_3):
        await store.devices.set_key(device_id, KEY_1)
    await store.presence.record_handshake(
        DEVICE_2, ip="x", at=T0, platform_id=6, product_id=6, product_firmware_version=1
    )
    later = T0 + timedelta(minutes=5)
    await store.presence.record(
        [
            PresenceUpdate(DEVICE_1.upper(), True, later),
            PresenceUpdate(DEVICE_2, False, later.astimezone(timezone(timedelta(hours=-3)))),
            PresenceUpdate(UNKNOWN, True, later),  # ignored
            PresenceUpdate("not an id", True, later),  # ignored
        ]
    )
    devices = {d.id: d for d in await store.devices.all(owner_id=None)}
    assert set(devices) == {DEVICE_1, DEVICE_2, DEVICE_3}
    assert (devices[DEVICE_1].online, devices[DEVICE_1].last_heard) == (True, later)
    assert (devices[DEVICE_2].online, devices[DEVICE_2].last_heard) == (False, later)
    assert (devices[DEVICE_3].online, devices[DEVICE_3].last_heard) == (False, None)
    # Presence touches nothing else.
    assert devices[DEVICE_2].last_handshake_at == T0
    await store.presence.record([])


async def test_record_presence_is_one_transaction(store: Store) -> None:
    await store.devices.set_key(DEVICE_1, KEY_1)
    await store.devices.set_key(DEVICE_2, KEY_1)
    with pytest.raises(StoreError, match="timezone"):
        await store.presence.record(
            [
                PresenceUpdate(DEVICE_1, True, T0),
                PresenceUpdate(DEVICE_2, True, T0.replace(tzinfo=None)),
            ]
        )
    # Nothing from the rejected batch was applied, not even the valid first update.
    for device in await store.devices.all(owner_id=None):
        assert (device.online, device.last_heard) == (False, None)


async def test_mark_all_offline(store: Store) -> None:
    for device_id in (DEVICE_1, DEVICE_2):
        await store.devices.set_key(device_id, KEY_1)
    await store.presence.record(
        [PresenceUpdate(DEVICE_1, True, T0), PresenceUpdate(DEVICE_2, True, T0)]
    )
    assert all(d.online for d in await store.devices.all(owner_id=None))
    await store.presence.mark_all_offline()
    devices = await store.devices.all(owner_id=None)
    assert [d.online for d in devices] == [False, False]
    # last_heard survives: it says when the device was last seen.
    assert [d.last_heard for d in devices] == [T0, T0]


async def test_records_are_detached_copies(store: Store) -> None:
    await store.devices.set_key(DEVICE_1, KEY_1)
    await store.presence.record_describe(DEVICE_1, functions=["led"], variables={"t": "double"})
    device = await store.devices.get(DEVICE_1)
    assert isinstance(device, DeviceRecord)
    device.variables["t"] = "string"
    again = await store.devices.get(DEVICE_1)
    assert again is not None
    assert again.variables == {"t": "double"}
    with pytest.raises(AttributeError):
        device.name = "changed"  # type: ignore[misc]


async def test_concurrent_get_or_create(store: Store) -> None:
    users = await asyncio.gather(*(store.users.ensure(f"Carol{'!' * (i % 2)}") for i in range(8)))
    assert len({u.id for u in users}) == 2
    owner = users[0].id
    devices = await asyncio.gather(
        *(store.devices.add(DEVICE_1, KEY_1, owner_id=owner) for _ in range(8)),
        *(store.devices.set_key(DEVICE_2, KEY_2) for _ in range(8)),
    )
    assert {d.id for d in devices if d is not None} == {DEVICE_1}
    assert [d.id for d in await store.devices.all(owner_id=None)] == [DEVICE_1, DEVICE_2]


async def test_open_missing_postgres_database(postgres_server: PostgresServer) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        await Store.open(postgres_server.url("no_such_database"))
