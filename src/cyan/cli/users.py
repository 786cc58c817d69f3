"""`cyan user …`: the accounts particle-cli logs in with (`particle login`).

Like `cyan token`, these work on the store directly, with the server up or not.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cyan.cli.admin import minute, with_store
from cyan.cli.options import DatabaseUrl, DataDir
from cyan.cli.output import console, fail, out, reports_errors

if TYPE_CHECKING:
    from cyan.store import AccountRecord, Store

user_app = typer.Typer(help="User accounts, for `particle login`.", no_args_is_help=True)

Username = Annotated[
    str, typer.Argument(help="The name to log in with, usually an email address.", metavar="EMAIL")
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from standard input instead of prompting (for scripts).",
    ),
]


def read_password(from_stdin: bool) -> str:
    """The new password: all of stdin less one line ending, or typed twice, hidden."""
    if from_stdin:
        # As `docker login --password-stdin`: only the final newline is not the password's.
        return sys.stdin.read().removesuffix("\n").removesuffix("\r")
    # On stderr, like every message: stdout carries only values scripts read (output.py).
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return password


@user_app.command("add")
@reports_errors
def user_add(
    username: Username,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user who can log in with particle-cli or particle-api-js."""
    from cyan.store import UserExists  # the store loads only when a command needs it
    from cyan.store.users import username_or_error

    username_or_error(username)

    async def exists(store: Store) -> bool:
        return await store.users.find(username) is not None

    # Asked before the password prompt, so that nobody types a password for nothing.
    if with_store(data_dir, database_url, exists):
        raise UserExists(
            f"a user named {username} exists already",
            fix=f"Set its password with: cyan user password {username}",
        )
    password = read_password(password_stdin)
    record = with_store(data_dir, database_url, lambda store: store.users.add(username, password))
    console.print(f"user [bold]{record.username}[/] added; log in with: particle login")


@user_app.command("list")
@reports_errors
def user_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List users, whether each has a password, and how many live tokens each holds."""
    accounts: list[AccountRecord] = with_store(
        data_dir, database_url, lambda store: store.users.list_accounts()
    )
    table = Table("username", "created", "password", "tokens", caption="times in UTC")
    for account in accounts:
        table.add_row(
            account.user.username,
            minute(account.user.created_at),
            # A user made by `cyan token create --user` has none until one is set.
            "set" if account.has_password else "none",
            str(account.tokens),
        )
    out.print(table)


@user_app.command("password")
@reports_errors
def user_password(
    username: Username,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a user's password (its access tokens stay valid: revoke them with cyan token)."""
    user = with_store(data_dir, database_url, lambda store: store.users.find(username))
    if user is None:
        raise fail(f"no user named {username}", f"Create it with: cyan user add {username}")
    password = read_password(password_stdin)
    with_store(data_dir, database_url, lambda store: store.users.set_password(user.id, password))
    console.print(f"password of [bold]{user.username}[/] set")
