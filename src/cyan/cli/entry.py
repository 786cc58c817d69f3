"""The `cyan` command's entry point.

`cyan serve` is started without importing the other commands: they bring the virtual
device, the DNS resolver, httpx and the diagnosis (about 0.15 s), and a server that was
killed should be accepting its devices again as soon as it can. Every other command line
goes to the whole app (main.py).
"""

from __future__ import annotations

import sys
from typing import Any

import typer


def new_app() -> typer.Typer:
    """The `cyan` command group, without its commands."""
    return typer.Typer(
        name="cyan",
        help="Cyan: a self-hosted device cloud for Particle Photon, P1 and Core devices.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        # Markdown: a docstring's paragraphs are rewrapped to the terminal, not broken where
        # the source line ends.
        rich_markup_mode="markdown",
    )


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        from cyan.cli.serve import serve

        app = new_app()
        # A callback keeps it a group (a Typer app of one command would take no command
        # name), so `cyan serve …` parses and helps exactly as in the whole app.
        app.callback()(_group)
        app.command("serve")(serve)
    else:
        from cyan.cli.main import app
    command = typer.main.get_command(app)
    _untyped_flags(command)
    command()


def _untyped_flags(command: Any) -> None:
    """Show no value type beside a flag: Typer's help prints ``--help <bool>``, and a reader
    would type a value after a flag that takes none. (Duck-typed: Typer 0.2x ships its own
    copy of click, whose classes it does not export.)"""
    helper = command.get_help_option(typer.Context(command, info_name=command.name))
    for option in [*command.params, helper]:
        if getattr(option, "is_flag", False):
            option.metavar = ""
    for child in getattr(command, "commands", {}).values():
        _untyped_flags(child)


def _group() -> None:
    pass
