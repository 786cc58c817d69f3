"""`cyan token …` and `cyan device add/list`: work on the store directly, server up or not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from cyan.cli.options import DatabaseUrl, DataDir, data_dir_origin
from cyan.cli.output import console, fail, out, reports_errors
from cyan.datadir import require_served
from cyan.protocol import crypto, keys
from cyan.settings import ADMIN_USERNAME, load_settings

if TYPE_CHECKING:
    from cyan.store import Store, TokenRecord, UserRecord

T = TypeVar("T")

token_app = typer.Typer(help="Access tokens for the REST API.", no_args_is_help=True)


def with_store(
    data_dir: Path | None, database_url: str | None, work: Callable[[Store], Awaitable[T]]
) -> T:
    # Imported here, not at the top: SQLAlchemy and Alembic cost the commands that need no
    # store (doctor, explain, keys server, device run) most of a second at every start.
    from cyan.store import Store

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    require_served(settings.data_dir, settings.database_url, data_dir_origin(data_dir))

    async def run() -> T:
        store = await Store.open(settings.database_url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


@token_app.command("create")
@reports_errors
def token_create(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    user: Annotated[str, typer.Option(help="User the token belongs to.")] = ADMIN_USERNAME,
    expires_in: Annotated[
        int, typer.Option(help="Lifetime in seconds; 0 means it never expires.")
    ] = 0,
) -> None:
    """Print a new access token (for the local admin unless --user is given)."""

    async def work(store: Store) -> str:
        account = await store.users.ensure(user)
        expires = datetime.now(UTC) + timedelta(seconds=expires_in) if expires_in else None
        return await store.tokens.create(account.id, client_id="cyan-cli", expires_at=expires)

    out.print(with_store(data_dir, database_url, work))


def minute(moment: datetime) -> str:
    """A time in a table: UTC to the minute, short enough for five columns in 80."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@token_app.command("list")
@reports_errors
def token_list(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    user: Annotated[str | None, typer.Option(help="Only this user's tokens.")] = None,
) -> None:
    """List unexpired tokens by id: the start of their hash, as tokens are not kept."""

    from cyan.store import UnknownUser

    async def work(store: Store) -> tuple[list[UserRecord], list[TokenRecord]]:
        owner_id = None
        if user is not None:
            found = await store.users.find(user)
            if found is None:
                raise UnknownUser(f"no user named {user}", fix="See the users: cyan user list")
            owner_id = found.id
        return await store.users.all(), await store.tokens.all(owner_id)

    users, tokens = with_store(data_dir, database_url, work)
    names = {account.id: account.username for account in users}
    table = Table(caption="times in UTC")
    table.add_column("id", no_wrap=True)
    table.add_column("user")
    table.add_column("client")
    table.add_column("created", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    for token in tokens:
        table.add_row(
            token.token_id,
            names.get(token.user_id, str(token.user_id)),
            token.client_id,
            minute(token.created_at),
            minute(token.expires_at) if token.expires_at else "never",
        )
    out.print(table)


@token_app.command("revoke")
@reports_errors
def token_revoke(
    token: Annotated[str, typer.Argument(help="The token, or its id from `cyan token list`.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token, given the token itself or its id."""

    from cyan.store.tokens import TOKEN_ID_CHARS

    async def work(store: Store) -> bool:
        if await store.tokens.revoke(token):
            return True
        # Not a token Cyan knows: maybe an id (hash prefix) copied from `cyan token list`.
        return len(token) <= TOKEN_ID_CHARS and await store.tokens.revoke_id(token) > 0

    if not with_store(data_dir, database_url, work):
        raise fail("no such token", "See the live tokens with: cyan token list")
    # A running server caches token lookups for a few seconds (api/cache.py).
    console.print("token revoked; a running server refuses it within seconds")


def read_public_key(path: Path) -> bytes:
    """A device public key (PEM or DER, public or private) as SubjectPublicKeyInfo DER."""
    try:
        key = crypto.load_public_key(path.read_bytes())
    except FileNotFoundError:
        raise fail(f"{path} does not exist") from None
    except ValueError as exc:
        raise fail(f"{path}: {exc}", "Give the device's RSA public key, PEM or DER.") from None
    if crypto.key_bits(key) != keys.DEVICE_KEY_BITS:
        raise fail(f"{path} holds an RSA-{crypto.key_bits(key)} key; Photon keys are RSA-1024")
    return crypto.public_key_der(key)


@reports_errors
def device_add(
    device_id: Annotated[str, typer.Argument(help="24 hex characters.")],
    public_key: Annotated[Path, typer.Option("--public-key", help="The device's public key.")],
    name: Annotated[str | None, typer.Option(help="A name to call the device by.")] = None,
    owner: Annotated[str, typer.Option(help="User who owns the device.")] = ADMIN_USERNAME,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a device and its public key (replaces the key of a known device)."""
    try:
        normalized = keys.normalize_device_id(device_id)
    except ValueError as exc:
        raise fail(str(exc)) from None
    der = read_public_key(public_key)

    async def work(store: Store) -> None:
        account = await store.users.ensure(owner)
        await store.devices.add(normalized, der, owner_id=account.id, name=name)

    with_store(data_dir, database_url, work)
    console.print(
        f"device [bold]{normalized}[/] registered (key "
        f"{crypto.fingerprint(crypto.load_public_key(der))[:16]}…)"
    )


@reports_errors
def device_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List registered devices as the store last saw them."""
    records = with_store(data_dir, database_url, lambda s: s.devices.all(owner_id=None))
    table = Table("id", "name", "online", "last heard", "last ip")
    for record in records:
        heard = record.last_heard.isoformat(timespec="seconds") if record.last_heard else "never"
        table.add_row(
            record.id,
            record.name or "",
            "yes" if record.online else "no",
            heard,
            record.last_ip or "",
        )
    out.print(table)
