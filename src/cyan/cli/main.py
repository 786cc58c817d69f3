"""The `cyan` command."""

from __future__ import annotations

import typer

from cyan import __version__
from cyan.cli.admin import token_app
from cyan.cli.device import device_app
from cyan.cli.doctor import doctor
from cyan.cli.entry import new_app
from cyan.cli.explain import explain
from cyan.cli.firmware import firmware_app
from cyan.cli.keys import keys_app
from cyan.cli.serve import serve
from cyan.cli.users import user_app

app = new_app()
app.command("serve")(serve)
app.command("doctor")(doctor)
app.command("explain")(explain)
app.add_typer(keys_app, name="keys")
app.add_typer(firmware_app, name="firmware")
app.add_typer(device_app, name="device")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")


@app.command("version")
def version() -> None:
    """Print Cyan's version."""
    typer.echo(__version__)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print Cyan's version."
    ),
) -> None:
    # No docstring: the group's help stays the one new_app() gives it.
    pass


if __name__ == "__main__":
    app()
